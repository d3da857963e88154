"""The second-stage protocol and the one function that builds top-``depth`` pairs.

A reranker is anything with a ``fingerprint`` (cache identity: weights and every setting
that changes its scores), ``max_length``, ``device``, ``token_lengths(pairs)`` and
``score(pairs, on_done, lengths, progress)`` returning one float per pair (higher = more
relevant). The kinds evalkit ships are listed in
:data:`evalkit.config.registry.RERANKERS` (cross-encoder, bi-encoder, python, http,
colbert; ONNX / OpenVINO as backends); ``reranker=none`` is ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from evalkit.types import DOC_ID, QUERY_ID, RANK, rank_run

Pair = tuple[str, str]


@runtime_checkable
class Reranker(Protocol):
    """What the engine, the latency pass and the caches need from a second stage."""

    fingerprint: str
    max_length: int | None
    device: str | None

    def token_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Untruncated length of each pair (tokens, or words for models without one)."""

    def score(
        self,
        pairs: Sequence[Pair],
        on_done: Callable[[list[int], np.ndarray], None] | None = None,
        lengths: np.ndarray | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """One float32 score per pair, in input order. ``on_done(indices, values)`` is
        called as chunks finish (so callers can persist them); ``progress(n)`` counts pairs.
        """


def split_at_depth(run: pd.DataFrame, depth: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(head, tail)``: each query's top ``depth`` by the evaluation rule, and the rest.

    Example:
        >>> run = pd.DataFrame({"query_id": ["q"] * 3, "doc_id": ["a", "b", "c"],
        ...                     "score": [3.0, 2.0, 1.0]})
        >>> head, tail = split_at_depth(run, 2)
        >>> head["doc_id"].tolist(), tail["doc_id"].tolist()
        (['a', 'b'], ['c'])
    """
    ranked = rank_run(run)
    return ranked[ranked[RANK] <= depth], ranked[ranked[RANK] > depth]


def head_pairs(
    run: pd.DataFrame, query_text: dict[str, str], doc_text: dict[str, str], depth: int
) -> tuple[pd.DataFrame, list[Pair], pd.DataFrame]:
    """The top-``depth`` candidates of ``run`` as (query text, document text) pairs.

    Returns ``(head, pairs, tail)``: ``pairs[i]`` belongs to ``head.iloc[i]``. A candidate
    whose document has no text (an external run over a larger collection than the corpus)
    cannot be scored: it goes to the tail, where it keeps its first-stage place below the
    reranked head. Every place that reranks (the engine, the latency pass, throughput)
    builds its pairs here.

    Example:
        >>> run = pd.DataFrame({"query_id": ["q"] * 3, "doc_id": ["a", "x", "b"],
        ...                     "score": [3.0, 2.0, 1.0]})
        >>> head, pairs, tail = head_pairs(run, {"q": "?"}, {"a": "A", "b": "B"}, 2)
        >>> pairs, tail["doc_id"].tolist()  # x has no text: kept, not scored
        ([('?', 'A')], ['x', 'b'])
    """
    head, tail = split_at_depth(run, depth)
    has_text = head[DOC_ID].astype(str).isin(doc_text.keys())
    if not has_text.all():
        tail = pd.concat([head[~has_text], tail], ignore_index=True)
        head = head[has_text]
    pairs = list(
        zip(
            head[QUERY_ID].astype(str).map(query_text),
            head[DOC_ID].astype(str).map(doc_text),
            strict=True,
        )
    )
    return head, pairs, tail
