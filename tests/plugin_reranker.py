"""A reranker from user code, as the README shows it: word overlap between query and
document (a deterministic second stage whose scores can be computed by hand)."""

from __future__ import annotations

import numpy as np


class WordOverlap:
    fingerprint = "word-overlap-v1"  # changes when the scoring changes (cache identity)
    max_length = None
    device = "cpu"

    def token_lengths(self, pairs):
        return np.array([len(q.split()) + len(d.split()) for q, d in pairs])

    def score(self, pairs, on_done=None, lengths=None, progress=None):
        scores = np.array(
            [len(set(q.lower().split()) & set(d.lower().split())) for q, d in pairs],
            dtype=np.float32,
        )
        if on_done is not None:
            on_done(list(range(len(pairs))), scores)
        if progress is not None:
            progress(len(pairs))
        return scores


def make() -> WordOverlap:
    return WordOverlap()


def broken():
    return object()
