"""What the second stage receives per query: its pairs and their token lengths.

The price of a priced reranker and the query shapes of the load test both come from here,
computed once from the evaluation's own first stage.
"""

from __future__ import annotations

import pandas as pd

from evalkit.config.schema import Config
from evalkit.measure.cost import price
from evalkit.pipeline import TwoStage
from evalkit.rerank.base import head_pairs
from evalkit.retrieve.base import doc_texts_by_id, query_texts_by_id
from evalkit.types import QUERY_ID, Dataset


def rerank_shapes(
    pipeline: TwoStage, dataset: Dataset, first_stage: pd.DataFrame, depth: int, clip: bool = False
) -> dict[str, tuple[int, int]]:
    """``query_id -> (pairs, tokens)`` the second stage receives for each query of the
    evaluation's first stage: its top ``depth`` candidates (none for a query the selective
    policy keeps unreranked) and their summed ``token_lengths`` (cut at the scorer's
    max_length with ``clip``). Queries without pairs are absent."""
    scorer = pipeline.scorer
    if scorer is None:
        return {}
    chosen = pipeline.selected(first_stage, dataset)
    head, pairs, _ = head_pairs(
        first_stage[first_stage[QUERY_ID].astype(str).isin(chosen)],
        query_texts_by_id(dataset.queries),
        doc_texts_by_id(dataset.corpus),
        depth,
    )
    if not pairs:
        return {}
    tokens = pd.Series(scorer.token_lengths(pairs), index=head.index, dtype="int64")
    if clip and scorer.max_length:
        tokens = tokens.clip(upper=scorer.max_length)
    by_query = tokens.groupby(head[QUERY_ID].astype(str))
    counts, totals = by_query.size(), by_query.sum()
    return {str(q): (int(counts[q]), int(totals[q])) for q in counts.index}


def measure_cost(
    config: Config, pipeline: TwoStage, dataset: Dataset, first_stage: pd.DataFrame
) -> dict:
    """Dollars per 1,000 queries when the reranker has a price (see :mod:`evalkit.measure.cost`);
    ``{}`` otherwise."""
    rr = config.reranker
    if pipeline.scorer is None or (
        rr.price_per_1k_searches is None and rr.price_per_1m_tokens is None
    ):
        return {}
    shapes = rerank_shapes(pipeline, dataset, first_stage, config.pipeline.depth)
    ids = dataset.queries[QUERY_ID].astype(str)
    return price(
        rr,
        [shapes.get(q, (0, 0))[0] for q in ids],
        [shapes.get(q, (0, 0))[1] for q in ids],
    )
