"""Corpus embeddings in shards: resumable, memory-mapped, splittable across jobs.

The corpus is cut into fixed-size shards; each shard is one ``.npy`` file in a folder keyed
by model and corpus content, written atomically (``cache.cached_file``) so a crash loses at
most the shard in flight and a rerun encodes only the missing shards. ``job=(i, n)`` encodes
only the shards with ``index % n == i``, so cluster jobs can split the work; the final run
finds every shard on disk. Shards stay memory-mapped: search reads them chunk by chunk and
never concatenates them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit.cache import _load_npy, _save_npy, cached_file, digest, texts_digest

log = logging.getLogger(__name__)


@dataclass
class ShardedMatrix:
    """Row blocks (memory-mapped) that together form the corpus embedding matrix."""

    blocks: list[np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        width = self.blocks[0].shape[1] if self.blocks else 0
        return (sum(b.shape[0] for b in self.blocks), width)

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, rows)`` chunks of at most ``size`` rows, across shards."""
        offset = 0
        for block in self.blocks:
            for start in range(0, block.shape[0], size):
                yield offset + start, block[start : start + size]
            offset += block.shape[0]

    def to_array(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros((0, 0), np.float32)


def _shard(path: Path, part: list[str], encode) -> np.ndarray:
    rows = len(part)
    return cached_file(
        path,
        lambda tmp: _save_npy(tmp, np.asarray(encode(part), dtype=np.float32)),
        lambda p: _load_npy(p, rows),
    )


def encode_sharded(
    texts: list[str],
    encode: Callable[[list[str]], np.ndarray],
    folder: Path,
    model_key: str,
    shard_size: int = 100_000,
    job: tuple[int, int] | None = None,
) -> ShardedMatrix | None:
    """Encode ``texts`` shard by shard into ``folder`` (resumable); return all shards.

    With ``job=(i, n)`` only this job's shards are encoded and None is returned (other
    jobs produce the rest).
    """
    root = Path(folder) / digest(model_key, texts_digest(texts), len(texts), shard_size)
    blocks = []
    count = (len(texts) + shard_size - 1) // shard_size
    for index in range(count):
        if job is not None and index % job[1] != job[0]:
            continue
        part = texts[index * shard_size : (index + 1) * shard_size]
        path = root / f"shard-{index:05d}.npy"
        if not path.exists():
            log.info("encoding shard %d/%d (%d texts)", index + 1, count, len(part))
        blocks.append(_shard(path, part, encode))
    return None if job is not None else ShardedMatrix(blocks)
