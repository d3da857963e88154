"""Bi-encoder second stage: rescore candidates by cosine similarity (a cheap reranker)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.models.encoders import BiEncoder
from evalkit.rerank.base import Pair

DOC_CHUNK = 512  # unique documents encoded between two progress updates


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

    def take_split(self):
        """The encoder's tokenize / wait / forward seconds since the last call."""
        return self.encoder.take_split()

    def score(self, pairs: Sequence[Pair], on_done=None, lengths=None, progress=None):
        """Cosine scores; documents are encoded in chunks so ``progress`` counts the pairs
        whose document is done (the bar moves while the corpus is encoded)."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        queries = sorted({q for q, _ in pairs})
        docs = sorted({d for _, d in pairs})
        q_index = {text: i for i, text in enumerate(queries)}
        d_index = {text: i for i, text in enumerate(docs)}
        q_emb = self.encoder.encode(queries, self.query_prefix, quiet=True)
        qi = np.fromiter((q_index[q] for q, _ in pairs), dtype=np.int64, count=len(pairs))
        di = np.fromiter((d_index[d] for _, d in pairs), dtype=np.int64, count=len(pairs))
        d_emb = np.zeros((len(docs), q_emb.shape[1]), dtype=np.float32)
        per_doc = np.bincount(di, minlength=len(docs))
        for start in range(0, len(docs), DOC_CHUNK):
            stop = min(start + DOC_CHUNK, len(docs))
            d_emb[start:stop] = self.encoder.encode(
                docs[start:stop], self.passage_prefix, quiet=True
            )
            if progress is not None:
                progress(int(per_doc[start:stop].sum()))
        scores = np.einsum("ij,ij->i", q_emb[qi], d_emb[di]).astype(np.float32)
        if on_done is not None:
            on_done(list(range(len(pairs))), scores)
        return scores
