"""Hand-made results for report / decide tests, saved through ``RunResult.save`` (the one
owner of the folder format), with per-query values and latencies chosen by the test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evalkit.results import Identity, RunResult


def make_identity(
    dataset: str = "toy",
    retriever: str = "bm25",
    reranker: str | None = "ce",
    depth: int | None = 100,
    reranker_settings: dict | None = None,
    retriever_settings: dict | None = None,
    relevance_level: int = 1,
) -> Identity:
    return Identity(
        dataset={
            "name": dataset,
            "content": f"content-of-{dataset}",
            "split": "test",
            "relevance_level": relevance_level,
            "exclude_self": False,
        },
        retriever={
            "name": retriever,
            "fingerprint": f"fp-{retriever}",
            **(retriever_settings or {}),
        },
        first_stage_k=1000,
        contract="contract",
        reranker=(
            {
                "name": reranker,
                "model": f"models/{reranker}",
                "fingerprint": f"local:{reranker}",
                "max_length": 512,
                **(reranker_settings or {}),
            }
            if reranker is not None
            else None
        ),
        depth=depth if reranker is not None else None,
    )


def make_run(
    root: Path,
    name: str,
    first: list[float],
    reranked: list[float] | None = None,
    *,
    reranker: str = "ce",
    depth: int = 100,
    p95_total: float = 100.0,
    p95_first: float = 5.0,
    timed_queries: int = 100,
    pairs_per_second: float | None = 1000.0,
    dataset: str = "toy",
    retriever: str = "bm25",
    gpu: str | None = None,
    random_weights: bool = False,
    reranker_settings: dict | None = None,
    measure: str = "nDCG@10",
    relevance_level: int = 1,
    first_stage_scores: list[list[float]] | None = None,
    load_curve: dict | None = None,
) -> Path:
    """A finished run folder whose ``measure`` per query is ``first`` / ``reranked``.

    Online per-query latency: the first stage takes ``p95_first`` ms for every query and
    the whole system ``p95_total`` (so p50 = p95 = these values).
    """
    queries = [str(i) for i in range(len(first))]
    has_second = reranked is not None or random_weights
    identity = make_identity(
        dataset,
        retriever,
        reranker if has_second else None,
        depth,
        reranker_settings,
        relevance_level=relevance_level,
    )
    rows = [("first_stage", q, measure, v) for q, v in zip(queries, first, strict=True)]
    n = len(first)
    metrics: dict = {
        "first_stage": {measure: sum(first) / n},
        "dataset": dataset,
        "num_queries": n,
        "recall_at_depth": {"measure": f"R@{depth}", "value": 0.8},
        "quality_meaningful": not random_weights,
        "contract": {"relevance_level": relevance_level},
    }
    # 100 timed queries whatever the number evaluated (enough for a decided p95: 72)
    timed = timed_queries
    stages = {"first_stage": [p95_first] * timed}
    if reranked is not None:
        rows += [("reranked", q, measure, v) for q, v in zip(queries, reranked, strict=True)]
        metrics["reranked"] = {measure: sum(reranked) / n}
    if has_second:
        stages["rerank"] = [p95_total - p95_first] * timed
    stages["total"] = [p95_total if has_second else p95_first] * timed
    total = stages["total"][0]
    online: dict = {
        s: {"p50_ms": v[0], "p95_ms": v[0], "p99_ms": v[0], "qps": 1000.0 / total}
        for s, v in stages.items()
    }
    online["per_query_ms"] = stages
    online["conditions"] = {"concurrency": 1}
    result = RunResult(
        identity=identity,
        config={
            "dataset": {"name": dataset},
            "retriever": {"name": retriever, "weights": "pretrained"},
            "reranker": {
                "name": reranker if has_second else "none",
                "weights": "random" if random_weights else "pretrained",
            },
            "pipeline": {"depth": depth, "first_stage_k": 1000},
        },
        metrics=metrics,
        per_query=pd.DataFrame(rows, columns=["stage", "query_id", "measure", "value"]),
        latency={
            "online": online,
            "offline": {
                "rerank_pairs_per_second": pairs_per_second if has_second else None,
                "search_queries_per_second": 500.0,
            },
        },
        env={"hardware": {"cpu": "test-cpu", "cpu_count": 2, "gpu": gpu}},
        runs={"first_stage": _run(queries, first_stage_scores)} if first_stage_scores else {},
        load_curve=load_curve,
    )
    return result.save(root / name, {"config_hash": name})


def _run(queries: list[str], scores: list[list[float]]) -> pd.DataFrame:
    rows = [
        (q, f"d{i}", value)
        for q, values in zip(queries, scores, strict=True)
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "score"])
