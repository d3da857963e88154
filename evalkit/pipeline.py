"""Two-stage retrieval: first stage -> (optional) reranking, with throughput counters.

``TwoStage(retriever, scorer, depth, first_stage_k).run(dataset)`` returns both runs and
offline throughput (the whole query set in large batches: docs/s for indexing, queries/s
for search, pairs/s for reranking). Online per-query latency is measured separately by
:mod:`evalkit.timing`, never mixed with these numbers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.cache import PairScoreCache, cached_file, digest, texts_digest
from evalkit.rerank.engine import rerank
from evalkit.retrieve.base import document_texts, exclude_self_matches
from evalkit.types import Dataset, check_run

log = logging.getLogger(__name__)


@dataclass
class StageRuns:
    first_stage: pd.DataFrame
    reranked: pd.DataFrame | None
    throughput: dict = field(default_factory=dict)
    rerank_stats: dict = field(default_factory=dict)


def _seconds(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e9


class TwoStage:
    """First stage, then the reranker over the top ``depth`` candidates.

    Args:
        retriever: object with ``index(corpus)`` and ``search(queries, k)``.
        scorer: pair scorer for the second stage, or None (no reranking).
        depth: candidates reranked per query.
        first_stage_k: candidates the first stage returns (the tail beyond ``depth`` is kept).
        pair_cache: optional pair-score cache.
        run_cache_dir: optional folder for cached first-stage runs (keyed by
            ``retriever_key`` + corpus + queries + k).
    """

    def __init__(
        self,
        retriever,
        scorer=None,
        depth: int = 100,
        first_stage_k: int = 1000,
        pair_cache: PairScoreCache | None = None,
        run_cache_dir: Path | None = None,
        retriever_key: str | None = None,
        show_progress: bool = True,
    ) -> None:
        self.retriever = retriever
        self.scorer = scorer
        self.depth = depth
        self.first_stage_k = first_stage_k
        self.pair_cache = pair_cache
        self.run_cache_dir = run_cache_dir
        self.retriever_key = retriever_key
        self.show_progress = show_progress
        self._indexed_corpus: str | None = None

    def first_stage(self, dataset: Dataset) -> tuple[pd.DataFrame, dict]:
        """The first-stage run (from the run cache when possible) and its throughput."""
        k = self.first_stage_k + (1 if dataset.exclude_self else 0)
        if self.run_cache_dir is None or self.retriever_key is None:
            return self._search(dataset, k)
        key = digest(
            self.retriever_key,
            texts_digest(document_texts(dataset.corpus)),
            texts_digest(dataset.corpus["doc_id"].astype(str)),
            texts_digest(dataset.queries["query_id"].astype(str)),
            texts_digest(dataset.queries["text"].astype(str)),
            k,
            dataset.exclude_self,
            self.first_stage_k,
        )
        throughput: dict = {"first_stage_cached": True}

        def compute(path: Path) -> None:
            run, measured = self._search(dataset, k)
            throughput.update(measured, first_stage_cached=False)
            run.to_parquet(path, index=False)

        run = cached_file(self.run_cache_dir / f"{key}.parquet", compute, pd.read_parquet)
        return run, throughput

    def ensure_indexed(self, dataset: Dataset) -> dict:
        """Index the corpus unless this retriever already holds it; returns throughput."""
        corpus_key = texts_digest(dataset.corpus["doc_id"].astype(str))
        if self._indexed_corpus == corpus_key:
            return {}
        start = time.perf_counter_ns()
        self.retriever.index(dataset.corpus)
        seconds = _seconds(start)
        self._indexed_corpus = corpus_key
        return {
            "index_seconds": seconds,
            "index_docs_per_second": len(dataset.corpus) / seconds if seconds else None,
        }

    def _search(self, dataset: Dataset, k: int) -> tuple[pd.DataFrame, dict]:
        throughput = self.ensure_indexed(dataset)
        start = time.perf_counter_ns()
        run = self.retriever.search(dataset.queries, k)
        seconds = _seconds(start)
        throughput["search_seconds"] = seconds
        throughput["search_queries_per_second"] = (
            len(dataset.queries) / seconds if seconds else None
        )
        if dataset.exclude_self:
            run = exclude_self_matches(run, self.first_stage_k)
        check_run(run, "first-stage run")
        return run, throughput

    def run(self, dataset: Dataset) -> StageRuns:
        first, throughput = self.first_stage(dataset)
        if self.scorer is None:
            return StageRuns(first, None, throughput)
        result = rerank(
            first,
            dataset.queries,
            dataset.corpus,
            self.depth,
            self.scorer,
            cache=self.pair_cache,
            show_progress=self.show_progress,
        )
        check_run(result.run, "reranked run")
        throughput["rerank_seconds"] = result.stats["seconds_scoring"]
        throughput["rerank_pairs_per_second"] = result.stats["pairs_per_second"]
        return StageRuns(first, result.run, throughput, result.stats)
