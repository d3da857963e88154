"""The reranking engine: one global, deduplicated, cached stream of pairs per run.

``rerank(first_stage, queries, corpus, depth, scorer)``:

1. ranks the first stage by the evaluation rule and splits it at ``depth``;
2. turns the head into (query text, document text) pairs, deduplicated by content;
3. looks pairs up in the :class:`~evalkit.cache.PairScoreCache` and scores only the misses,
   all queries together, longest first (the scorer buckets by length), saving scores as
   each chunk finishes so an interrupted run loses nothing already computed;
4. writes the head with the new scores and puts the first-stage tail below it, in its
   first-stage order.

Scores computed at depth 100 therefore serve depth 10, 20 and 50 without recomputation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from evalkit.cache import PairScoreCache, pair_key
from evalkit.faults import checkpoint
from evalkit.rerank.base import Reranker, head_pairs
from evalkit.retrieve.base import doc_texts_by_id, query_texts_by_id
from evalkit.types import DOC_ID, QUERY_ID, RANK, SCORE

log = logging.getLogger(__name__)

DEGENERATE_FRACTION = 0.5


@dataclass
class RerankResult:
    run: pd.DataFrame
    stats: dict = field(default_factory=dict)


def merge_head_and_tail(head: pd.DataFrame, tail: pd.DataFrame) -> pd.DataFrame:
    """Place each query's tail below its reranked head, keeping the tail's own order.

    Tail scores are shifted to ``min(head) - 1 - (max(tail) - score)``: every tail
    document ranks below every head document, ties and gaps inside the tail are kept, so
    the evaluation rule reproduces the first-stage tail order exactly.
    """
    if tail.empty:
        return head.loc[:, [QUERY_ID, DOC_ID, SCORE]].reset_index(drop=True)
    head_min = head.groupby(QUERY_ID)[SCORE].min()
    tail_max = tail.groupby(QUERY_ID)[SCORE].max()
    shifted = tail[QUERY_ID].map(head_min) - 1.0 - (tail[QUERY_ID].map(tail_max) - tail[SCORE])
    shifted = shifted.where(shifted.notna(), tail[SCORE])  # a query with no head keeps its run
    new_tail = tail.assign(**{SCORE: shifted.to_numpy()})
    return pd.concat(
        [head.loc[:, [QUERY_ID, DOC_ID, SCORE]], new_tail.loc[:, [QUERY_ID, DOC_ID, SCORE]]],
        ignore_index=True,
    )


def degenerate_stats(head: pd.DataFrame) -> dict:
    """How often the reranker could not tell candidates apart (constant or tied scores)."""
    sizes = head.groupby(QUERY_ID)[SCORE].size()
    distinct = head.groupby(QUERY_ID)[SCORE].nunique()
    multi = sizes[sizes > 1].index
    constant = int((distinct[multi] == 1).sum())
    ordered = head.sort_values([QUERY_ID, SCORE])
    same_query = ordered[QUERY_ID].to_numpy()[1:] == ordered[QUERY_ID].to_numpy()[:-1]
    equal = np.diff(ordered[SCORE].to_numpy()) == 0
    adjacent = int(same_query.sum())
    tie_rate = float((equal & same_query).sum() / adjacent) if adjacent else 0.0
    constant_fraction = constant / len(multi) if len(multi) else 0.0
    return {
        "queries_with_constant_scores": constant,
        "constant_score_fraction": constant_fraction,
        "tie_rate": tie_rate,
        "degenerate": bool(
            constant_fraction > DEGENERATE_FRACTION or tie_rate > DEGENERATE_FRACTION
        ),
    }


def rerank(
    first_stage: pd.DataFrame,
    queries: pd.DataFrame,
    corpus: pd.DataFrame,
    depth: int,
    scorer: Reranker,
    cache: PairScoreCache | None = None,
    show_progress: bool = True,
) -> RerankResult:
    """Rerank the top ``depth`` candidates of each query; keep the tail below them.

    Args:
        first_stage: run ``query_id, doc_id, score``.
        queries, corpus: frames with the texts.
        depth: candidates rescored per query (the rest keep their first-stage order).
        scorer: a :class:`~evalkit.rerank.base.Reranker`.
        cache: optional pair-score cache; hits are not recomputed.

    Returns:
        :class:`RerankResult` with the reranked run and counters (pairs total / unique /
        cached / scored, seconds, tokens, truncation, degeneracy).
    """
    head, pairs, tail = head_pairs(
        first_stage, query_texts_by_id(queries), doc_texts_by_id(corpus), depth
    )
    keys = [pair_key(q, d) for q, d in pairs]
    unique: dict[bytes, int] = {}
    for index, key in enumerate(keys):
        unique.setdefault(key, index)
    unique_keys = list(unique)
    known = cache.get_many(scorer.fingerprint, unique_keys) if cache is not None else {}
    misses = [key for key in unique_keys if key not in known]
    miss_pairs = [pairs[unique[key]] for key in misses]

    stats: dict = {
        # an external run's candidates without text: kept at their first-stage place
        # head_pairs moved them to the tail, where they keep their first-stage rank
        "candidates_without_text": int((tail[RANK] <= depth).sum()),
        "pairs_total": len(pairs),
        "pairs_unique": len(unique_keys),
        "pairs_cached": len(unique_keys) - len(misses),
        "pairs_scored": len(misses),
        "max_length": scorer.max_length,
    }
    if stats["candidates_without_text"]:
        log.warning(
            "%d candidates in the top %d have no text in the corpus: kept at their "
            "first-stage place below the reranked head, not scored",
            stats["candidates_without_text"],
            depth,
        )
    scores, timing = score_and_cache(scorer, miss_pairs, misses, cache, show_progress)
    known.update(zip(misses, (float(s) for s in scores), strict=True))
    stats.update(timing)
    new_head = head.assign(**{SCORE: np.array([known[k] for k in keys], dtype=np.float64)})
    stats.update(degenerate_stats(new_head))
    return RerankResult(run=merge_head_and_tail(new_head, tail), stats=stats)


def score_and_cache(
    scorer: Reranker,
    pairs: list,
    keys: list[bytes],
    cache: PairScoreCache | None,
    show_progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Score ``pairs`` (whose cache keys are ``keys``) and store every score in ``cache``.

    Chunks the scorer reports through ``on_done`` are stored as they finish (a killed run
    keeps them); whatever it did not report is stored when it returns, so a second stage
    that ignores ``on_done`` is cached all the same.
    """
    take_split = getattr(scorer, "take_split", None)
    if take_split is not None:
        take_split()  # the split of this call only
    started = time.perf_counter_ns()
    lengths = scorer.token_lengths(pairs) if pairs else np.zeros(0)
    saved = np.zeros(len(pairs), dtype=bool)

    def persist(indices, values):
        indices = list(indices)
        if cache is not None:
            cache.put_many(
                scorer.fingerprint,
                ((keys[i], float(v)) for i, v in zip(indices, values, strict=True)),
            )
        saved[indices] = True
        checkpoint("rerank_chunk")  # crash-safety tests: killed after a chunk is saved

    with tqdm(
        total=len(pairs), desc="rerank", unit="pair", disable=not show_progress or not pairs
    ) as bar:
        scores = _call_scorer(scorer, pairs, persist, lengths, bar.update)
    scores = _checked_scores(scores, len(pairs), scorer)
    if pairs and not saved.all():
        rest = np.flatnonzero(~saved)
        persist(rest, scores[rest])
    elapsed = (time.perf_counter_ns() - started) / 1e9
    timing: dict = {
        "seconds_scoring": elapsed,
        "pairs_per_second": len(pairs) / elapsed if pairs and elapsed > 0 else None,
    }
    if take_split is not None and pairs:
        timing["time_split"] = take_split().to_dict()
    if len(lengths) and scorer.max_length:
        timing["mean_tokens_per_pair"] = float(np.minimum(lengths, scorer.max_length).mean())
        timing["truncated_pairs"] = int((lengths > scorer.max_length).sum())
    return scores, timing


def _call_scorer(scorer: Reranker, pairs: list, on_done, lengths, progress):
    """``scorer.score``; a second stage from the user's own code that raises is the user's
    error to fix (one line naming it), evalkit's own are evalkit's bugs."""
    try:
        return scorer.score(pairs, on_done=on_done, lengths=lengths, progress=progress)
    except Exception as error:
        if type(scorer).__module__.split(".")[0] == "evalkit":
            raise
        from evalkit.errors import ModelError, problem

        raise ModelError(
            problem(
                f"the second stage '{scorer.fingerprint}' ({type(scorer).__module__}) raised "
                f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}",
                "reranker.target",
                "fix its score(pairs, ...) (verbose=true shows the trace)",
            )
        ) from error


def _checked_scores(scores, count: int, scorer: Reranker) -> np.ndarray:
    """One finite float per pair, or a one-line error naming the second stage."""
    from evalkit.errors import ModelError, problem

    try:
        values = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (count,):
        found = "non-numbers" if values is None else f"shape {values.shape}"
        raise ModelError(
            problem(
                f"the second stage '{scorer.fingerprint}' returned {found} for {count} pairs",
                "reranker",
                "score(pairs) must return one float per pair, in input order",
            )
        )
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ModelError(
            problem(
                f"the second stage '{scorer.fingerprint}' returned {bad} NaN or infinite "
                f"scores for {count} pairs",
                "reranker",
                "score(pairs) must return finite floats (a half-precision model that "
                "overflows does this: try reranker.dtype=fp32)",
            )
        )
    return values
