"""Hand-made result folders for report / decide tests (the same files evalkit-run writes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml


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
    pairs_per_second: float | None = 1000.0,
    dataset: str = "toy",
    retriever: str = "bm25",
    gpu: str | None = None,
    random_weights: bool = False,
) -> Path:
    """A complete run folder whose nDCG@10 per query is ``first`` / ``reranked``.

    Online per-query latency: the first stage takes ``p95_first`` ms for every query and
    the whole system ``p95_total`` (so p50 = p95 = these values).
    """
    folder = root / name
    folder.mkdir(parents=True)
    queries = [str(i) for i in range(len(first))]
    config = {
        "dataset": {"name": dataset},
        "retriever": {"name": retriever, "weights": "pretrained"},
        "reranker": {
            "name": reranker if reranked is not None else "none",
            "weights": "random" if random_weights else "pretrained",
        },
        "pipeline": {"depth": depth, "first_stage_k": 1000},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [("first_stage", q, "nDCG@10", v) for q, v in zip(queries, first, strict=True)]
    metrics = {
        "first_stage": {"nDCG@10": sum(first) / len(first)},
        "num_queries": len(first),
        "recall_at_depth": {"measure": f"R@{depth}", "value": 0.8},
        "quality_meaningful": not random_weights,
    }
    n = len(first)
    stages = {"first_stage": [p95_first] * n}
    if reranked is not None:
        rows += [("reranked", q, "nDCG@10", v) for q, v in zip(queries, reranked, strict=True)]
        metrics["reranked"] = {"nDCG@10": sum(reranked) / n}
        stages["rerank"] = [p95_total - p95_first] * n
    stages["total"] = [p95_total if reranked is not None else p95_first] * n
    total = stages["total"][0]
    online = {
        s: {
            "p50_ms": v[0],
            "p95_ms": v[0],
            "p99_ms": v[0],
            "mean_ms": v[0],
            "max_ms": v[0],
            "qps": 1000.0 / total,
        }
        for s, v in stages.items()
    }
    online["per_query_ms"] = stages
    online["conditions"] = {"concurrency": 1}
    latency = {
        "online": online,
        "offline": {
            "rerank_pairs_per_second": pairs_per_second,
            "search_queries_per_second": 500.0,
        },
    }
    env = {
        "hardware": {"cpu": "test-cpu", "cpu_count": 2, "gpu": gpu},
        "models": {"reranker": f"{reranker}-weights"},
    }
    pd.DataFrame(rows, columns=["stage", "query_id", "measure", "value"]).to_parquet(
        folder / "per_query.parquet", index=False
    )
    for file, data in (
        ("metrics.json", metrics),
        ("latency.json", latency),
        ("env.json", env),
        ("complete.json", {"config_hash": name}),
    ):
        (folder / file).write_text(json.dumps(data))
    return folder
