"""A deterministic keyword encoder for unit tests: a text's embedding is the normalised
count vector of a fixed keyword list, so cosine similarities (and rankings) can be
computed by hand."""

from __future__ import annotations

import numpy as np

KEYWORDS = ("wind", "tunnel", "heat", "boundary", "layer", "flutter", "supersonic", "wing")


def encode(texts: list[str], prefix: str = "") -> np.ndarray:
    """``texts`` -> float32 [n, len(KEYWORDS)], L2-normalised (zero rows stay zero)."""
    counts = np.array(
        [[f"{prefix}{t}".lower().split().count(k) for k in KEYWORDS] for t in texts],
        dtype=np.float32,
    ).reshape(len(texts), len(KEYWORDS))
    norms = np.linalg.norm(counts, axis=1, keepdims=True)
    return np.divide(counts, norms, out=np.zeros_like(counts), where=norms > 0)


class KeywordModel:
    """Just enough of a sentence-transformers model for evalkit's BiEncoder wrapper."""

    device = "cpu"
    max_seq_length = 64

    def encode(self, texts, prompt=None, **kwargs):
        return encode(list(texts), prompt or "")

    def get_sentence_embedding_dimension(self) -> int:
        return len(KEYWORDS)
