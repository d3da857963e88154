"""Two-stage retrieval: first stage -> (optional) reranker over the top ``depth``.

:class:`TwoStage` owns the depth and times its own stages:

* :meth:`TwoStage.run` - the batched evaluation pass over every query (offline
  throughput: docs/s indexing, queries/s search, pairs/s reranking);
* :meth:`TwoStage.online_stages` - the same system as per-query stages for the online
  latency pass (:func:`evalkit.measure.online.measure_online`);

Measuring is not the pipeline's job: :mod:`evalkit.measure` times these stages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.cache import PairScoreCache, cached_file, digest, texts_digest
from evalkit.rerank.base import Reranker, head_pairs
from evalkit.rerank.engine import rerank
from evalkit.rerank.policy import Policy
from evalkit.retrieve.base import document_texts, exclude_self_matches
from evalkit.types import QUERY_ID, Dataset, Stage, check_run

log = logging.getLogger(__name__)


@dataclass
class StageRuns:
    first_stage: pd.DataFrame
    reranked: pd.DataFrame | None
    throughput: dict = field(default_factory=dict)
    rerank_stats: dict = field(default_factory=dict)
    retriever_warnings: dict = field(default_factory=dict)  # e.g. a run file's unknown ids


def _seconds(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e9


class TwoStage:
    """First stage, then the reranker over the top ``depth`` candidates.

    Args:
        retriever: object with ``index(corpus)``, ``search(queries, k)`` and ``fingerprint``.
        scorer: a :class:`~evalkit.rerank.base.Reranker`, or None (no reranking).
        depth: candidates reranked per query.
        first_stage_k: candidates the first stage returns (the tail beyond ``depth`` is kept);
            None: every candidate (an external run kept whole).
        pair_cache: optional pair-score cache.
        run_cache_dir: optional folder for cached first-stage runs (keyed by the retriever's
            fingerprint + corpus + queries + k).
        policy: optional per-query rule (:class:`~evalkit.rerank.policy.Policy`): only queries
            it selects are reranked, the others keep their first-stage ranking.
    """

    def __init__(
        self,
        retriever,
        scorer: Reranker | None = None,
        depth: int = 100,
        first_stage_k: int | None = 1000,
        pair_cache: PairScoreCache | None = None,
        run_cache_dir: Path | None = None,
        show_progress: bool = True,
        policy: Policy | None = None,
    ) -> None:
        self.policy = policy
        self._query_features: pd.DataFrame | None = None
        self.retriever = retriever
        self.scorer = scorer
        self.depth = depth
        self.first_stage_k = first_stage_k
        self.pair_cache = pair_cache
        self.run_cache_dir = run_cache_dir
        self.show_progress = show_progress
        self._indexed_corpus: str | None = None

    @property
    def device(self) -> str | None:
        """Where the models run (``cuda`` needs synchronising while timing)."""
        for part in (self.scorer, self.retriever):
            device = getattr(part, "device", None)
            if device:
                return str(device)
        return None

    def first_stage(self, dataset: Dataset) -> tuple[pd.DataFrame, dict]:
        """The first-stage run (from the run cache when possible) and its throughput."""
        k = self._fetch(self.first_stage_k, dataset.exclude_self)
        if self.run_cache_dir is None:
            return self._search(dataset, k)
        key = digest(
            self.retriever.fingerprint,
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

        run = cached_file(self.run_cache_dir / f"{key}.parquet", compute, _read_run)
        return run, throughput

    @staticmethod
    def _fetch(k: int | None, exclude_self: bool) -> int | None:
        """Candidates to ask for: one more when a query may retrieve itself (dropped)."""
        return None if k is None else k + (1 if exclude_self else 0)

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

    def selected(self, run: pd.DataFrame, dataset: Dataset | None = None) -> set[str]:
        """Queries of ``run`` the policy reranks (all of them without a policy)."""
        queries = set(run[QUERY_ID].astype(str))
        if self.policy is None:
            return queries
        from evalkit.rerank.policy import first_stage_features

        features = first_stage_features(run)
        if self.policy.needs_corpus:
            features = features.join(self._features_of(dataset), how="left")
        chosen = self.policy.select(features)
        return {str(q) for q in chosen[chosen].index}

    def _features_of(self, dataset: Dataset | None) -> pd.DataFrame:
        if self._query_features is None:
            from evalkit.rerank.policy import query_features

            self._query_features = query_features(dataset.queries, document_texts(dataset.corpus))
        return self._query_features

    def run(self, dataset: Dataset, rerank_queries: bool = True) -> StageRuns:
        """The batched evaluation pass; ``rerank_queries=False`` stops after the first
        stage (cost-only runs, whose reranked quality means nothing)."""
        first, throughput = self.first_stage(dataset)
        warnings = dict(getattr(self.retriever, "warnings", {}))
        if self.scorer is None or not rerank_queries:
            return StageRuns(first, None, throughput, retriever_warnings=warnings)
        chosen = self.selected(first, dataset)
        is_chosen = first[QUERY_ID].astype(str).isin(chosen)
        if not is_chosen.any():  # the policy reranks nothing: the first stage is the answer
            stats = {
                "policy": {"rule": str(self.policy), "queries_reranked": 0, "share_reranked": 0.0}
            }
            return StageRuns(first, first.copy(), throughput, stats, warnings)
        result = rerank(
            first[is_chosen],
            dataset.queries,
            dataset.corpus,
            self.depth,
            self.scorer,
            cache=self.pair_cache,
            show_progress=self.show_progress,
        )
        reranked = pd.concat([result.run, first[~is_chosen][list(result.run.columns)]])
        check_run(reranked, "reranked run")
        throughput["rerank_seconds"] = result.stats["seconds_scoring"]
        stats = dict(result.stats)
        if self.policy is not None:
            queries = first[QUERY_ID].nunique()
            stats["policy"] = {
                "rule": str(self.policy),
                "queries_reranked": len(chosen),
                "share_reranked": len(chosen) / queries if queries else 0.0,
            }
        return StageRuns(first, reranked.reset_index(drop=True), throughput, stats, warnings)

    def online_stages(
        self, doc_text: dict[str, str], depth: int | None = None, exclude_self: bool = False
    ) -> list[Stage]:
        """This system as per-query stages for one query ``(query_id, text)``.

        Texts are looked up before timing; tokenisation is inside the rerank stage; the
        pair cache is not used (a served query is new).
        """
        depth = self.depth if depth is None else depth
        retriever, scorer = self.retriever, self.scorer
        wanted = None if self.first_stage_k is None else max(depth, self.first_stage_k)
        fetch = self._fetch(wanted, exclude_self)
        stages: list[Stage] = []
        if hasattr(retriever, "encode_queries"):
            stages.append(("query_encoding", lambda q: (q, retriever.encode_queries([q[1]]))))
            stages.append(
                (
                    "first_stage",
                    lambda state: (
                        state[0],
                        retriever.search_embeddings([state[0][0]], state[1], fetch),
                    ),
                )
            )
        else:
            stages.append(
                (
                    "first_stage",
                    lambda q: (
                        q,
                        retriever.search(pd.DataFrame({QUERY_ID: [q[0]], "text": [q[1]]}), fetch),
                    ),
                )
            )
        if scorer is not None:
            # a served query is new: its tokenization is timed (documents' ids are kept,
            # as a serving stack keeps them); scorers without the split just score
            score_online = getattr(scorer, "score_online", scorer.score)

            def rerank_one(state):
                (query_id, text), run = state
                if self.policy is not None and str(query_id) not in self.selected(run):
                    return None  # the policy keeps this query's first-stage ranking
                _, pairs, _ = head_pairs(run, {str(query_id): text}, doc_text, depth)
                return score_online(pairs)

            stages.append(("rerank", rerank_one))
        return stages


def _read_run(path: Path) -> pd.DataFrame:
    run = pd.read_parquet(path)
    check_run(run, f"cached first-stage run {path.name}")
    return run
