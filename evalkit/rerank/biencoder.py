"""Bi-encoder second stage: rescore candidates by cosine similarity (a cheap reranker)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.models.encoders import BiEncoder
from evalkit.rerank.base import Pair


class BiEncoderReranker:
    """Rescores pairs by bi-encoder cosine similarity (a cheap second stage)."""

    def __init__(
        self,
        encoder: BiEncoder,
        query_prefix: str = "",
        passage_prefix: str = "",
        fingerprint: str = "",
    ) -> None:
        self.encoder = encoder
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.fingerprint = fingerprint
        self.max_length = encoder.max_length
        self.device = encoder.device

    def token_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        return np.array([len(q.split()) + len(d.split()) for q, d in pairs], dtype=np.int64)

    def score(self, pairs: Sequence[Pair], on_done=None, lengths=None, progress=None):
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        queries = sorted({q for q, _ in pairs})
        docs = sorted({d for _, d in pairs})
        q_index = {text: i for i, text in enumerate(queries)}
        d_index = {text: i for i, text in enumerate(docs)}
        q_emb = self.encoder.encode(queries, self.query_prefix)
        d_emb = self.encoder.encode(docs, self.passage_prefix)
        qi = np.fromiter((q_index[q] for q, _ in pairs), dtype=np.int64, count=len(pairs))
        di = np.fromiter((d_index[d] for _, d in pairs), dtype=np.int64, count=len(pairs))
        scores = np.einsum("ij,ij->i", q_emb[qi], d_emb[di]).astype(np.float32)
        if progress is not None:
            progress(len(pairs))
        if on_done is not None:
            on_done(list(range(len(pairs))), scores)
        return scores
