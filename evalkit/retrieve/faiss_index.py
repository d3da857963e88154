"""FAISS indexes for corpora too large for exact chunked search (inner product).

``flat`` is exact (same ranking as evalkit's exact search), ``ivf`` clusters the corpus and
probes ``nprobe`` lists, ``hnsw`` walks a graph. Indexes are cached as files next to the
embeddings (atomic write, rebuilt if unreadable).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evalkit.cache import cached_file, digest
from evalkit.errors import ConfigError, problem

KINDS = ("flat", "ivf", "hnsw")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            problem(
                "FAISS is not installed", fix="pip install -e '.[faiss]' (faiss-cpu or faiss-gpu)"
            )
        ) from None
    return faiss


def build_index(matrix, kind: str, nlist: int = 0, hnsw_m: int = 32, seed: int = 0):
    """Build a FAISS inner-product index over ``matrix`` (array or ShardedMatrix)."""
    faiss = _faiss()
    if kind not in KINDS:
        raise ConfigError(
            problem(
                f"unknown index '{kind}'", "retriever.index", f"use exact, auto or one of {KINDS}"
            )
        )
    rows, dim = matrix.shape
    chunks = matrix.chunks(65_536) if hasattr(matrix, "chunks") else [(0, matrix)]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        lists = nlist or max(1, int(4 * math.sqrt(rows)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample_rows = np.sort(rng.choice(rows, size=min(rows, lists * 64), replace=False))
        full = matrix.to_array() if hasattr(matrix, "to_array") else matrix
        index.train(np.ascontiguousarray(full[sample_rows], dtype=np.float32))
    for _, chunk in chunks:
        index.add(np.ascontiguousarray(chunk, dtype=np.float32))
    return index


def cached_index(folder: Path, embeddings_key: str, matrix, kind: str, **params):
    faiss = _faiss()
    path = Path(folder) / f"{digest(embeddings_key, kind, sorted(params.items()))}.faiss"
    return cached_file(
        path,
        lambda tmp: faiss.write_index(build_index(matrix, kind, **params), str(tmp)),
        lambda p: faiss.read_index(str(p)),
    )


def search_index(index, queries: np.ndarray, k: int, nprobe: int = 32, ef_search: int = 128):
    """Top ``k`` (scores, row indices) per query from a FAISS index."""
    faiss = _faiss()
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = nprobe
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(ef_search, k)
    scores, indices = index.search(
        np.ascontiguousarray(queries, dtype=np.float32), min(k, index.ntotal)
    )
    return scores, indices
