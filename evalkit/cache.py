"""Content-addressed caches shared safely by concurrent sweep jobs.

* :class:`PairScoreCache` - reranker scores in SQLite (WAL mode): key = model fingerprint
  (weights hash or revision, dtype, backend, max_length) + hash(query text) + hash(doc text).
  Transactions make every write atomic; a killed writer leaves no torn row.
* :func:`cached_file` - one artifact file (corpus embeddings ``.npy``, first-stage run
  ``.parquet``) computed once under a file lock (a claim: other jobs wait, then reuse),
  written to a temporary name and renamed into place. A file that fails to load is
  treated as torn, deleted and recomputed.

No pickle anywhere: SQLite rows, ``.npy`` (``allow_pickle=False``) and Parquet.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from evalkit.faults import checkpoint

log = logging.getLogger(__name__)
T = TypeVar("T")


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def pair_key(query: str, doc: str) -> bytes:
    """Key of a (query text, document text) pair: hash of the two text hashes."""
    return hashlib.blake2b(text_hash(query) + text_hash(doc), digest_size=16).digest()


def digest(*parts: object) -> str:
    """A short stable hex digest of the string forms of ``parts``."""
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:32]


def texts_digest(texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text_hash(text))
    return h.hexdigest()[:32]


class PairScoreCache:
    """Reranker pair scores keyed by model fingerprint and pair texts.

    Example:
        >>> import tempfile
        >>> cache = PairScoreCache(Path(tempfile.mkdtemp()) / "scores.sqlite")
        >>> cache.put_many("model-a", [(pair_key("q", "d"), 1.5)])
        >>> cache.get_many("model-a", [pair_key("q", "d"), pair_key("q", "other")])
        {b'...': 1.5}  # doctest: +SKIP
    """

    BATCH = 500

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS scores (model TEXT NOT NULL, pair BLOB NOT NULL, "
            "score REAL NOT NULL, PRIMARY KEY (model, pair)) WITHOUT ROWID"
        )

    def get_many(self, model: str, keys: Sequence[bytes]) -> dict[bytes, float]:
        found: dict[bytes, float] = {}
        for start in range(0, len(keys), self.BATCH):
            batch = list(keys[start : start + self.BATCH])
            marks = ",".join("?" * len(batch))
            rows = self._connection.execute(
                f"SELECT pair, score FROM scores WHERE model = ? AND pair IN ({marks})",
                [model, *batch],
            )
            found.update((bytes(pair), float(score)) for pair, score in rows)
        return found

    def put_many(self, model: str, items: Iterable[tuple[bytes, float]]) -> None:
        rows = [(model, key, float(score)) for key, score in items]
        if not rows:
            return
        with self._connection:  # one transaction: all rows or none
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.executemany(
                "INSERT OR REPLACE INTO scores (model, pair, score) VALUES (?, ?, ?)", rows
            )

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self._connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
        return int(
            self._connection.execute(
                "SELECT COUNT(*) FROM scores WHERE model = ?", (model,)
            ).fetchone()[0]
        )

    def close(self) -> None:
        self._connection.close()


def cached_file(path: Path, compute: Callable[[Path], None], load: Callable[[Path], T]) -> T:
    """Return ``load(path)``, computing the file first if it is missing or torn.

    ``compute(tmp)`` writes the artifact to ``tmp``; it is renamed to ``path`` only when
    complete. A file lock beside ``path`` makes concurrent callers compute it once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            try:
                return load(path)
            except Exception as error:
                log.warning("cache entry %s is unreadable (%s); recomputing", path, error)
                path.unlink()
        scratch = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            compute(scratch)
            with scratch.open("rb") as handle:
                os.fsync(handle.fileno())
            checkpoint("cache_before_rename")
            os.replace(scratch, path)
        finally:
            if scratch.exists():
                scratch.unlink()
        return load(path)


def _save_npy(path: Path, array) -> None:
    import numpy as np

    with path.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _load_npy(path: Path, rows: int):
    import numpy as np

    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.shape[0] != rows:
        raise ValueError(f"expected {rows} rows, found {array.shape[0]}")
    return array


def clear_cache(cache_dir: str | Path) -> int:
    """Delete everything evalkit cached under ``cache_dir``; returns the bytes freed."""
    root = Path(cache_dir).expanduser()
    if not root.exists():
        return 0
    freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    for child in ("pair_scores.sqlite", "pair_scores.sqlite-wal", "pair_scores.sqlite-shm"):
        (root / child).unlink(missing_ok=True)
    for folder in ("embeddings", "runs", "random_models", "datasets"):
        shutil.rmtree(root / folder, ignore_errors=True)
    return freed
