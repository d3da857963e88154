"""Content-addressed caches shared safely by concurrent sweep jobs.

* :class:`PairScoreCache` - reranker scores in SQLite (WAL mode): key = model fingerprint
  (weights hash or revision, dtype, backend, max_length) + hash(query text) + hash(doc text).
  Transactions make every write atomic; a killed writer leaves no torn row.
* :func:`cached_file` - one artifact file (corpus embeddings ``.npy``, first-stage run
  ``.parquet``, FAISS index) computed once under a file lock (a claim: other jobs wait,
  then reuse), written to a temporary name and renamed into place, with a checksum
  beside it (``<name>.xxh3``). On every read the checksum is verified: a file that does
  not match, has no checksum, or fails to load is deleted and recomputed, with a warning.
* Folder artifacts (BM25 indexes, random-weight models) carry a manifest of per-file
  checksums (:func:`write_manifest` / :func:`verify_manifest`).
* Pair scores carry a per-row check value; a row that fails it is a miss (recomputed).
* Every artifact is recorded, as it is made, in the root's manifest of what evalkit made
  (:mod:`evalkit.cache_root`); ``evalkit-cache clear`` deletes those entries, nothing else.

No pickle anywhere: SQLite rows, ``.npy`` (``allow_pickle=False``) and Parquet.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from evalkit.cache_root import record_entry
from evalkit.io import atomic_write, write_text

log = logging.getLogger(__name__)
T = TypeVar("T")


CHECKSUM_SUFFIX = ".xxh3"
MANIFEST = ".checksums.json"


def file_checksum(path: Path) -> str:
    """xxh3-128 of a file's bytes (fast enough to verify every read: see benchmarks)."""
    import xxhash

    h = xxhash.xxh3_128()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record a checksum of every file in ``folder`` (written last, atomically)."""
    import json

    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(folder)): file_checksum(p) for p in files}
    write_text(folder / MANIFEST, json.dumps(manifest, sort_keys=True))


def verify_manifest(folder: Path) -> bool:
    """True when ``folder`` holds exactly the files of its manifest, unchanged."""
    import json

    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        present = {
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and p.name != MANIFEST
        }
        if set(manifest) != present:
            return False
        return all(file_checksum(folder / name) == value for name, value in manifest.items())
    except (OSError, ValueError, TypeError, AttributeError):
        return False


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
        >>> found = cache.get_many("model-a", [pair_key("q", "d"), pair_key("q", "other")])
        >>> list(found.values())  # the pair never scored is a miss
        [1.5]
    """

    BATCH = 500

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record_entry(*(Path(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm")))
        try:
            self._open()
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise
            self._set_aside(error)

    def _set_aside(self, error: Exception) -> None:
        """A damaged database (malformed pages, not a database at all) is moved aside and
        a new one started, as the other caches rebuild a damaged entry: scores are
        recomputed, runs go on."""
        with contextlib.suppress(Exception):
            self._connection.close()
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                record_entry(Path(str(aside) + suffix))
                part.replace(Path(str(aside) + suffix))
        log.warning("pair-score cache %s is damaged (%s): set aside as %s", self.path, error, aside)
        self._open()

    def _open(self) -> None:
        self._connection = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        # Switching to WAL and creating the table take locks that SQLite's busy timeout
        # does not always wait for: jobs of a sweep opening the cache together retry.
        for attempt in range(60):
            try:
                self._connection.execute("PRAGMA journal_mode=WAL")
                self._connection.execute("PRAGMA synchronous=NORMAL")
                self._connection.execute(
                    "CREATE TABLE IF NOT EXISTS scores_v2 (model TEXT NOT NULL, pair BLOB NOT "
                    "NULL, score REAL NOT NULL, checkval INTEGER NOT NULL, PRIMARY KEY "
                    "(model, pair)) WITHOUT ROWID"
                )
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 59:
                    raise
                time.sleep(0.5)

    rejected = 0  # rows whose check value did not match (recomputed)

    @staticmethod
    def _check(model: str, pair: bytes, score: float) -> int:
        import struct

        import xxhash

        value = xxhash.xxh3_64_intdigest(model.encode() + b"\x1f" + pair + struct.pack("<d", score))
        return value - (1 << 63)  # SQLite integers are signed 64-bit

    def get_many(self, model: str, keys: Sequence[bytes]) -> dict[bytes, float]:
        """Scores found for ``keys``; rows that fail their check value count as misses, and
        a database found damaged is set aside (everything is a miss)."""
        try:
            return self._get_many(model, keys)
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise
            self._set_aside(error)
            return {}

    def _get_many(self, model: str, keys: Sequence[bytes]) -> dict[bytes, float]:
        found: dict[bytes, float] = {}
        for start in range(0, len(keys), self.BATCH):
            batch = list(keys[start : start + self.BATCH])
            marks = ",".join("?" * len(batch))
            rows = self._connection.execute(
                f"SELECT pair, score, checkval FROM scores_v2 WHERE model = ? "
                f"AND pair IN ({marks})",
                [model, *batch],
            )
            for pair, score, check in rows:
                if isinstance(score, float) and check == self._check(model, bytes(pair), score):
                    found[bytes(pair)] = score
                else:
                    self.rejected += 1
        if self.rejected:
            log.warning(
                "pair-score cache %s: %d rows failed their check value; recomputing them",
                self.path,
                self.rejected,
            )
        return found

    def put_many(self, model: str, items: Iterable[tuple[bytes, float]]) -> None:
        rows = [(model, k, float(v), self._check(model, k, float(v))) for k, v in items]
        if not rows:
            return
        try:
            self._put(rows)
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise
            self._set_aside(error)
            self._put(rows)

    def _put(self, rows: list) -> None:
        with self._connection:  # one transaction: all rows or none
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.executemany(
                "INSERT OR REPLACE INTO scores_v2 (model, pair, score, checkval) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self._connection.execute("SELECT COUNT(*) FROM scores_v2").fetchone()[0])
        return int(
            self._connection.execute(
                "SELECT COUNT(*) FROM scores_v2 WHERE model = ?", (model,)
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
    sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
    record_entry(path, sidecar, Path(str(path) + ".lock"))
    with FileLock(str(path) + ".lock"):
        if path.exists():
            try:
                expected = sidecar.read_text().strip() if sidecar.is_file() else None
                if expected != file_checksum(path):
                    raise ValueError("checksum does not match" if expected else "no checksum")
                return load(path)
            except Exception as error:
                log.warning("cache entry %s is damaged (%s); recomputing", path, error)
                path.unlink()
                sidecar.unlink(missing_ok=True)
        checksum: list[str] = []

        def write(scratch: Path) -> None:
            compute(scratch)
            checksum.append(file_checksum(scratch))

        atomic_write(path, write, point="cache_before_rename")
        write_text(sidecar, checksum[0])
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
