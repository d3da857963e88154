"""Dense first stage: sentence-transformers bi-encoder, normalised embeddings, exact top-k.

Search is exact inner product over normalised embeddings (cosine), computed in blocks of
queries x corpus chunks and merged, so memory stays bounded by the block sizes rather than
by ``num_queries x num_docs``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from evalkit.retrieve.base import document_texts
from evalkit.types import DOC_ID, QUERY_ID, SCORE


def _doc_chunks(docs, size: int):
    """``(first_row, rows)`` chunks of an array or a :class:`ShardedMatrix`."""
    if hasattr(docs, "chunks"):
        yield from docs.chunks(size)
        return
    for start in range(0, docs.shape[0], size):
        yield start, docs[start : start + size]


def _as_tensor_ready(rows: np.ndarray) -> np.ndarray:
    """Rows torch can wrap without copying; read-only memory maps are copied one chunk at
    a time (torch cannot wrap read-only buffers)."""
    if rows.dtype == np.float32 and rows.flags.c_contiguous and rows.flags.writeable:
        return rows
    return np.array(rows, dtype=np.float32)


def exact_top_k(
    queries: np.ndarray,
    docs,
    k: int,
    chunk_size: int = 50_000,
    query_block: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` documents by inner product for each query, in bounded memory.

    ``docs`` is an array or a :class:`~evalkit.retrieve.shards.ShardedMatrix` (memory-mapped
    shards are read chunk by chunk, never concatenated). Returns ``(scores, indices)``, each
    ``num_queries x min(k, num_docs)``, best first.

    Example:
        >>> q = np.array([[1.0, 0.0]], dtype=np.float32)
        >>> d = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
        >>> exact_top_k(q, d, k=2, chunk_size=2)[1].tolist()
        [[1, 2]]
    """
    import torch

    k = min(k, docs.shape[0])
    all_scores, all_indices = [], []
    for q_start in range(0, queries.shape[0], query_block):
        block = torch.from_numpy(
            np.ascontiguousarray(queries[q_start : q_start + query_block], dtype=np.float32)
        )
        best_scores = torch.empty((block.shape[0], 0))
        best_indices = torch.empty((block.shape[0], 0), dtype=torch.long)
        for start, rows in _doc_chunks(docs, chunk_size):
            chunk = torch.from_numpy(_as_tensor_ready(rows))
            scores = block @ chunk.T
            top = torch.topk(scores, min(k, chunk.shape[0]), dim=1)
            merged_scores = torch.cat([best_scores, top.values], dim=1)
            merged_indices = torch.cat([best_indices, top.indices + start], dim=1)
            keep = torch.topk(merged_scores, min(k, merged_scores.shape[1]), dim=1)
            best_scores = keep.values
            best_indices = torch.gather(merged_indices, 1, keep.indices)
        all_scores.append(best_scores.numpy())
        all_indices.append(best_indices.numpy())
    return np.concatenate(all_scores), np.concatenate(all_indices)


class DenseRetriever:
    """Bi-encoder first stage.

    Args:
        encode: ``encode(texts, prefix) -> float32 array`` of normalised embeddings
            (see :class:`evalkit.models.encoders.BiEncoder`).
        query_prefix, passage_prefix: strings prepended to queries / passages (e5 uses
            ``"query: "`` / ``"passage: "``).
        chunk_size: corpus rows scored at once during exact search.
        corpus_embeddings: optional ``(texts, encode) -> array`` hook that returns cached
            embeddings (the embedding cache); default encodes directly.
        fingerprint: identity of the model and the settings that change its embeddings.
        device: where the model runs (``cuda`` is synchronised while timing).
    """

    name = "dense"

    def __init__(
        self,
        encode: Callable[[list[str], str], np.ndarray],
        query_prefix: str = "",
        passage_prefix: str = "",
        chunk_size: int = 50_000,
        corpus_embeddings: Callable[[list[str]], np.ndarray] | None = None,
        index: str = "exact",
        exact_max_docs: int = 2_000_000,
        index_builder: Callable[[object, str], object] | None = None,
        nprobe: int = 32,
        ef_search: int = 128,
        fingerprint: str = "",
        device: str | None = None,
    ) -> None:
        self.encode = encode
        self.fingerprint = fingerprint
        self.device = device
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.chunk_size = chunk_size
        self._corpus_embeddings = corpus_embeddings
        self.index_kind, self.exact_max_docs = index, exact_max_docs
        self._index_builder = index_builder
        self.nprobe, self.ef_search = nprobe, ef_search
        self.doc_embeddings = None
        self.faiss_index = None
        self._doc_ids: np.ndarray | None = None

    def index(self, corpus: pd.DataFrame) -> None:
        texts = document_texts(corpus)
        if self._corpus_embeddings is not None:
            self.doc_embeddings = self._corpus_embeddings(texts)
        else:
            self.doc_embeddings = self.encode(texts, self.passage_prefix)
        self._doc_ids = corpus[DOC_ID].astype(str).to_numpy()
        kind = self.index_kind
        if kind == "auto":
            kind = "exact" if len(texts) <= self.exact_max_docs else "ivf"
        self.faiss_index = None
        if kind != "exact":
            from evalkit.retrieve.faiss_index import build_index

            builder = self._index_builder or build_index
            self.faiss_index = builder(self.doc_embeddings, kind)

    def encode_corpus_shards(self, corpus: pd.DataFrame, job: tuple[int, int]) -> None:
        """Encode only this job's shards of the corpus into the cache (cluster splitting)."""
        if self._corpus_embeddings is None:
            raise RuntimeError("shard jobs need the embedding cache")
        self._corpus_embeddings(document_texts(corpus), job=job)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, self.query_prefix)

    def search_embeddings(self, query_ids: list[str], embeddings: np.ndarray, k: int):
        if self.faiss_index is not None:
            from evalkit.retrieve.faiss_index import search_index

            scores, indices = search_index(
                self.faiss_index, embeddings, k, self.nprobe, self.ef_search
            )
        else:
            scores, indices = exact_top_k(embeddings, self.doc_embeddings, k, self.chunk_size)
        width = indices.shape[1]
        flat = indices.reshape(-1)
        found = flat >= 0  # FAISS marks missing results (few IVF candidates) with -1
        return pd.DataFrame(
            {
                QUERY_ID: np.repeat(np.asarray(query_ids, dtype=object), width)[found],
                DOC_ID: self._doc_ids[flat[found]],
                SCORE: scores.reshape(-1).astype(np.float64)[found],
            }
        )

    def search(self, queries: pd.DataFrame, k: int) -> pd.DataFrame:
        if self.doc_embeddings is None:
            raise RuntimeError("index() must be called before search()")
        embeddings = self.encode_queries(queries["text"].astype(str).tolist())
        return self.search_embeddings(queries[QUERY_ID].astype(str).tolist(), embeddings, k)
