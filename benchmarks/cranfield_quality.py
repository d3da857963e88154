"""Cranfield quality and wall time for the four reference configurations.

    python benchmarks/cranfield_quality.py [--out docs/cranfield_quality.md]

BM25; dense all-MiniLM-L6-v2; BM25 -> bi-encoder MiniLM (depth 100); BM25 -> a
random-weight MiniLM-L6-architecture cross-encoder at depth 10 (a plumbing check of the
cross-encoder path, not a quality claim: no cross-encoder weights can be had offline).
Each configuration runs cold (its own empty cache).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import CRANFIELD, compose, emit, machine, minilm_path

from evalkit.runner import run_experiment

MEASURES = ["nDCG@10", "P@10", "RR@10", "R@100", "AP"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: BM25 alone and a cost-only reranker, 3 queries",
    )
    args = parser.parse_args()
    minilm = minilm_path()
    configs = {
        "BM25": ["reranker=none"],
        "dense all-MiniLM-L6-v2": [
            "retriever=minilm",
            f"retriever.model={minilm}",
            "reranker=none",
        ],
        "BM25 -> biencoder MiniLM @100": [
            "reranker=biencoder",
            f"reranker.model={minilm}",
            "pipeline.depth=100",
        ],
        "BM25 -> random MiniLM-L6 cross-encoder @10 (plumbing)": [
            "reranker=minilm_l6",
            "reranker.weights=random",
            "eval.cost_only_quality=true",  # cost-only runs skip the quality rerank by default
            "pipeline.depth=10",
        ],
    }
    if args.smoke:
        configs = {
            k: [*v, "dataset.max_queries=3"]
            for k, v in configs.items()
            if "MiniLM" not in k or "random" in k
        }
    rows = []
    for name, overrides in configs.items():
        with tempfile.TemporaryDirectory() as scratch:
            cfg = compose(
                [
                    "dataset=local",
                    f"dataset.path={CRANFIELD}",
                    f"cache.dir={scratch}/c",
                    "show_progress=false",
                    "latency.enabled=false",
                    *overrides,
                ]
            )
            start = time.perf_counter()
            record = run_experiment(cfg, Path(scratch) / "run").metrics_record
            wall = time.perf_counter() - start
        reranks = any(o.startswith("reranker=") and o != "reranker=none" for o in overrides)
        if reranks and not record.reranked:
            raise SystemExit(f"{name}: the run has no reranked metrics (it did not rerank)")
        values = record.reranked or record.first_stage
        rows.append((name, values, wall))
        print(name, {m: round(values[m], 4) for m in MEASURES}, f"{wall:.1f}s", flush=True)
    lines = [
        f"Machine: {machine()}",
        "",
        "| configuration | " + " | ".join(MEASURES) + " | wall time (s) |",
        "|---|" + "---:|" * (len(MEASURES) + 1),
    ]
    for name, values, wall in rows:
        lines.append(
            f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in MEASURES) + f" | {wall:.1f} |"
        )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
