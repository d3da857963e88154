"""Sustained reranker throughput: the one definition of pairs/s that report and decide use."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from evalkit.pipeline import TwoStage
from evalkit.rerank.base import head_pairs
from evalkit.retrieve.base import query_texts_by_id
from evalkit.types import Clock


def pair_throughput(
    pipeline: TwoStage,
    run: pd.DataFrame,
    queries: pd.DataFrame,
    doc_text: dict[str, str],
    pairs: int,
    seed: int = 0,
    clock: Clock = time.perf_counter_ns,
    synchronize=None,
) -> dict:
    """Sustained pairs/s of the reranker: the one measurement report and decide use.

    A seeded uniform sample of ``pairs`` of the run's own top-``depth`` pairs (every
    query's candidates can be drawn, so the length mix is the run's), scored in the
    reranker's batch mode without the cache, after a short warm-up.
    """
    if pipeline.scorer is None:
        return {}
    _, all_pairs, _ = head_pairs(run, query_texts_by_id(queries), doc_text, pipeline.depth)
    if not all_pairs:
        return {}
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(all_pairs), size=min(pairs, len(all_pairs)), replace=False)
    sample = [all_pairs[i] for i in np.sort(chosen)]
    sync = synchronize or (lambda: None)
    pipeline.scorer.score(sample[: min(len(sample), 16)])  # warm-up
    sync()
    start = clock()
    pipeline.scorer.score(sample)
    sync()
    seconds = (clock() - start) / 1e9
    return {
        "rerank_pairs_per_second": len(sample) / seconds if seconds else None,
        "rerank_pairs_per_second_source": (
            f"{len(sample)} of the run's own top-{pipeline.depth} pairs (seeded sample), "
            "scored without the cache"
        ),
    }
