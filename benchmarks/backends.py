"""CPU backends on identical pairs, in one run: torch fp32 against ONNX Runtime and
OpenVINO, fp32 and dynamic int8, on the real all-MiniLM-L6-v2 (packaged, offline) as the
second stage, over Cranfield's BM25 candidates.

    python benchmarks/backends.py [--queries 40] [--depth 25] [--repeats 3]

For each backend: pairs/s (median of ``--repeats`` timed passes after a warm-up, no
cache), Spearman correlation of its scores with torch fp32's over all pairs, and the
per-query ranking agreement (mean Kendall tau of each query's candidate order; share of
queries whose top 10 is the same set; share with the same top-1).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import numpy as np
from scipy.stats import kendalltau, spearmanr

from evalkit import compose
from evalkit.config import build_retriever, build_scorer, validate
from evalkit.data.sources import load_dataset
from evalkit.rerank.base import head_pairs
from evalkit.retrieve.base import doc_texts_by_id, query_texts_by_id

VARIANTS = [
    ("torch fp32", []),
    ("torch bf16", ["reranker.dtype=bf16"]),
    ("onnxruntime fp32", ["reranker.backend=onnx"]),
    ("onnxruntime int8", ["reranker.backend=onnx", "reranker.quantize=int8"]),
    ("openvino fp32", ["reranker.backend=openvino"]),
    ("openvino int8", ["reranker.backend=openvino", "reranker.quantize=int8"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--depth", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reranker", default="biencoder_packaged")
    parser.add_argument(
        "--smoke", action="store_true", help="seconds: 2 queries x top 3, torch and ONNX fp32"
    )
    args = parser.parse_args()
    variants = VARIANTS[::2][:2] if args.smoke else VARIANTS
    if args.smoke:
        args.queries, args.depth, args.repeats = 2, 3, 1

    cache = tempfile.mkdtemp(prefix="evalkit-backends-")
    base = [
        "dataset=cranfield",
        f"reranker={args.reranker}",
        f"cache.dir={cache}",
        "show_progress=false",
    ]
    config = validate(compose(base))
    dataset = load_dataset(config.dataset, cache)
    queries = dataset.queries.sort_values("query_id").head(args.queries)
    retriever = build_retriever(config)
    retriever.index(dataset.corpus)
    run = retriever.search(queries, args.depth)
    head, pairs, _ = head_pairs(
        run, query_texts_by_id(queries), doc_texts_by_id(dataset.corpus), args.depth
    )
    query_of = head["query_id"].astype(str).to_numpy()
    print(
        f"{len(pairs)} pairs ({len(queries)} Cranfield queries x BM25 top {args.depth}); "
        f"{platform.processor() or platform.machine()}, reranker={args.reranker}"
    )
    results = {}
    for name, extra in variants:
        scorer = build_scorer(validate(compose(base + extra)))
        scorer.score(pairs[:64])  # warm-up (and the export, cached, on first use)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            scores = scorer.score(pairs)
            seconds.append(time.perf_counter() - start)
        results[name] = (np.asarray(scores, dtype=np.float64), statistics.median(seconds))
    reference, reference_s = results["torch fp32"]
    print("backend | pairs/s | vs torch | Spearman | Kendall tau/query | same top-10 | same top-1")
    print("---|---|---|---|---|---|---")
    for name, (scores, seconds) in results.items():
        taus, top10, top1 = [], [], []
        for query in np.unique(query_of):
            mask = query_of == query
            a, b = reference[mask], scores[mask]
            taus.append(kendalltau(a, b).statistic if mask.sum() > 1 else 1.0)
            order_a, order_b = np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable")
            top10.append(set(order_a[:10]) == set(order_b[:10]))
            top1.append(order_a[0] == order_b[0])
        print(
            f"{name} | {len(pairs) / seconds:,.1f} | {reference_s / seconds:.2f}x | "
            f"{spearmanr(reference, scores).statistic:.4f} | {np.nanmean(taus):.4f} | "
            f"{np.mean(top10):.0%} | {np.mean(top1):.0%}"
        )


if __name__ == "__main__":
    main()
