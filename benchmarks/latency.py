"""Online latency of the four rerankers, cost-only (random weights), on this machine.

    python benchmarks/latency.py [--depths 10 50 100] [--out docs/latency_cpu.md]

For each reranker (architecture-identical random weights, fp32, max_length 512) over BM25
candidates on Cranfield: one warm-up query at depth 10, then a small query sample per depth,
timed per stage by evalkit's own online mode (closed loop, concurrency 1). Reports
p50/p95 per stage, pairs/s (depth x queries / total rerank time), the FLOP estimate per
pair  2*L*(4d^2 + 2*d*d_ff)*T + 4*L*T^2*d  at the measured mean tokens per pair T, and
the share of this machine's measured fp32 matmul peak the reranker reaches.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import CRANFIELD, compose, emit, flops_per_pair, machine, matmul_peak_gflops

from evalkit.config import build_retriever, build_scorer, validate
from evalkit.data import load_dataset
from evalkit.measure.online import measure_online
from evalkit.pipeline import TwoStage
from evalkit.retrieve.base import doc_texts_by_id

# reranker config -> measured queries per depth (bge-reranker-v2-m3 is ~2 s per pair here)
SAMPLES = {"minilm_l6": 3, "minilm_l12": 2, "jina_v2": 1, "bge_m3": 1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--rerankers", nargs="+", default=list(SAMPLES))
    parser.add_argument("--cache", default="/tmp/evalkit-bench-cache")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--smoke", action="store_true", help="seconds: MiniLM-L6, depth 2, one query (tests)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.depths, args.rerankers = [2], ["minilm_l6"]
    peak = matmul_peak_gflops(256, 2) if args.smoke else matmul_peak_gflops()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for name in args.rerankers:
        config = validate(
            compose(
                [
                    "dataset=local",
                    f"dataset.path={CRANFIELD}",
                    f"cache.dir={args.cache}",
                    f"reranker={name}",
                    "reranker.weights=random",
                    "reranker.dtype=fp32",
                    "reranker.device=cpu",
                    "reranker.max_length=512",
                    "show_progress=false",
                ]
            )
        )
        dataset = load_dataset(config.dataset, args.cache)
        retriever = build_retriever(config)
        retriever.index(dataset.corpus)
        scorer = build_scorer(config)
        ordered = dataset.queries.sort_values("query_id", key=lambda s: s.astype(int))
        sample = list(zip(ordered.query_id, ordered.text, strict=True))[: SAMPLES[name]]
        if args.smoke:
            sample = sample[:1]
        texts = doc_texts_by_id(dataset.corpus)

        def stages_at(depth: int, retriever=retriever, scorer=scorer, texts=texts):
            return TwoStage(retriever, scorer, depth=depth, first_stage_k=depth).online_stages(
                texts, depth
            )

        warm = stages_at(10)
        measure_online(warm, sample[:1], warmup=0)  # one warm-up query, not reported
        for depth in args.depths:
            stages = stages_at(depth)
            result = measure_online(stages, sample, warmup=0)
            summary = result.summary()
            run = retriever.search(ordered.head(len(sample)), depth)
            query_text = dict(sample)
            pairs = [
                (query_text[q], texts[d]) for q, d in zip(run.query_id, run.doc_id, strict=True)
            ]
            lengths = np.minimum(scorer.token_lengths(pairs), 512)
            rerank_ms = result.per_query[result.per_query.stage == "rerank"]["ms"].sum()
            pairs_per_s = len(pairs) / (rerank_ms / 1000)
            tokens = float(lengths.mean())
            flops = flops_per_pair(config.reranker.model, tokens)
            row = {
                "reranker": name,
                "depth": depth,
                "queries": len(sample),
                "first_stage_p50_ms": summary["first_stage"]["p50_ms"],
                "first_stage_p95_ms": summary["first_stage"]["p95_ms"],
                "rerank_p50_ms": summary["rerank"]["p50_ms"],
                "rerank_p95_ms": summary["rerank"]["p95_ms"],
                "total_p50_ms": summary["total"]["p50_ms"],
                "total_p95_ms": summary["total"]["p95_ms"],
                "pairs_per_s": pairs_per_s,
                "mean_tokens": tokens,
                "truncated": int((scorer.token_lengths(pairs) > 512).sum()),
                "gflop_per_pair": flops / 1e9,
                "pct_peak": 100 * pairs_per_s * flops / 1e9 / peak,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = (
        "| reranker | depth | queries | first stage p50/p95 (ms) | rerank p50/p95 (ms) | "
        "total p50/p95 (ms) | pairs/s | mean tokens/pair (truncated) | GFLOP/pair | "
        "% of matmul peak |"
    )
    lines = [
        f"Machine: {machine()}; fp32 matmul peak {peak:.1f} GFLOP/s "
        "(torch.mm 2048x2048, best of 10)",
        "",
        header,
        "|---|" + "---:|" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r['reranker']} | {r['depth']} | {r['queries']} | "
            f"{r['first_stage_p50_ms']:.1f} / {r['first_stage_p95_ms']:.1f} | "
            f"{r['rerank_p50_ms']:.0f} / {r['rerank_p95_ms']:.0f} | "
            f"{r['total_p50_ms']:.0f} / {r['total_p95_ms']:.0f} | {r['pairs_per_s']:.2f} | "
            f"{r['mean_tokens']:.0f} ({r['truncated']}) | {r['gflop_per_pair']:.1f} | "
            f"{r['pct_peak']:.0f}% |"
        )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
