"""Reranking engine speed, measured side by side in one process.

    python benchmarks/rerank_speed.py [--queries 8] [--out docs/rerank_speed.md]

Cranfield, BM25 top 100, cost-only (random-weight, full-size) ms-marco-MiniLM-L6
architecture, fp32 on CPU, on a sample of queries:

1. evalkit's reranking stage (each text tokenized once, token-budget batches) vs the naive
   per-query loop (``model.predict`` per query, batch 32, then sort);
2. a depth sweep 10/20/50/100 sharing the pair cache vs one depth-100 run;
3. the same depth-100 run again with a warm cache vs cold;
4. precision / backend variants of evalkit's own scorers in pairs/s, with the Spearman
   correlation of their scores against torch fp32 — for the cross-encoder and for the real
   all-MiniLM-L6-v2 used as a (bi-encoder) scorer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import CRANFIELD, compose, emit, machine
from scipy.stats import spearmanr

from evalkit.cache import PairScoreCache
from evalkit.config import build_retriever, build_scorer, validate
from evalkit.data import load_dataset
from evalkit.rerank.engine import rerank
from evalkit.retrieve.base import doc_texts_by_id
from evalkit.types import rank_run


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def naive_loop(model, queries, candidates, texts):
    """The seed article's loop: predict per query (batch 32), then sort."""
    out = {}
    for query_id, query in queries:
        docs = candidates[query_id]
        scores = model.predict(
            [[query, texts[d]] for d in docs], batch_size=32, show_progress_bar=False
        )
        out[query_id] = sorted(zip(docs, scores, strict=True), key=lambda x: x[1], reverse=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--parts", default="1234", help="which parts to run, e.g. 234")
    parser.add_argument(
        "--smoke", action="store_true", help="about a minute: one query, parts 1 and 4"
    )
    args = parser.parse_args()
    if args.smoke:
        args.queries, args.parts = 1, "14"
    scratch = Path(tempfile.mkdtemp())
    overrides = [
        "dataset=local",
        f"dataset.path={CRANFIELD}",
        f"cache.dir={scratch}/cache",
        f"dataset.max_queries={args.queries}",
        "reranker=minilm_l6",
        "reranker.weights=random",
        "reranker.dtype=fp32",
        "reranker.device=cpu",
        "show_progress=false",
        *(["reranker.max_length=32"] if args.smoke else []),
    ]
    config = validate(compose(overrides))
    dataset = load_dataset(config.dataset, scratch)
    retriever = build_retriever(config)
    retriever.index(dataset.corpus)
    run = retriever.search(dataset.queries, 100)
    scorer = build_scorer(config)
    texts = doc_texts_by_id(dataset.corpus)
    queries = list(zip(dataset.queries.query_id, dataset.queries.text, strict=True))
    ranked = rank_run(run)
    candidates = {q: g.doc_id.tolist() for q, g in ranked.groupby("query_id")}
    pairs_total = len(ranked)
    lines = [
        f"Machine: {machine()}; {len(queries)} queries x BM25 top 100 = {pairs_total} "
        "pairs; cost-only MiniLM-L6 (full size, random weights), fp32, CPU",
        "",
    ]

    def engine(depth, cache=None):
        return rerank(
            run, dataset.queries, dataset.corpus, depth, scorer, cache=cache, show_progress=False
        )

    engine(10)  # warm-up: first forward passes, allocator
    if "1" in args.parts:
        lines += part_engine(engine, scorer, queries, candidates, texts, pairs_total)
    if "2" in args.parts or "3" in args.parts:
        lines += part_cache(engine, scratch)
    if "4" in args.parts:
        lines += part_variants(overrides, ranked, queries, texts)
    emit(lines, args.out)


def part_engine(engine, scorer, queries, candidates, texts, pairs_total) -> list[str]:
    results = {}
    for _ in range(2):  # interleaved, best of two each
        results.setdefault("naive", []).append(
            timed(lambda: naive_loop(scorer.model, queries, candidates, texts))[0]
        )
        results.setdefault("evalkit", []).append(timed(lambda: engine(100))[0])
    naive, ours = min(results["naive"]), min(results["evalkit"])
    lines = [
        "### 1. evalkit reranking stage vs naive per-query loop",
        "",
        "| | seconds (best of 2) | pairs/s |",
        "|---|---:|---:|",
        f"| naive loop (predict per query, batch 32) | {naive:.1f} | {pairs_total / naive:.1f} |",
        f"| evalkit (each text tokenized once; token-budget batches of 32 x max_length) | "
        f"{ours:.1f} | "
        f"{pairs_total / ours:.1f} |",
        "",
        f"Speed-up: **{naive / ours:.2f}x**",
        "",
    ]
    print("\n".join(lines), flush=True)
    return lines


def part_cache(engine, scratch) -> list[str]:
    sweeps, singles = [], []
    for attempt in range(2):  # interleaved, fresh caches, best of two each
        sweep_cache = PairScoreCache(scratch / f"sweep{attempt}.sqlite")
        sweeps.append(
            sum(timed(lambda d=d, c=sweep_cache: engine(d, c))[0] for d in (10, 20, 50, 100))
        )
        single_cache = PairScoreCache(scratch / f"single{attempt}.sqlite")
        singles.append(timed(lambda c=single_cache: engine(100, c))[0])
    sweep, single = min(sweeps), min(singles)
    warm, _ = timed(lambda: engine(100, single_cache))
    lines = [
        "### 2-3. depth sweep and warm cache",
        "",
        "| run | seconds | ratio |",
        "|---|---:|---:|",
        f"| single depth-100 run, cold cache | {single:.1f} | 1.00 |",
        f"| depth sweep 10, 20, 50, 100 sharing one cache | {sweep:.1f} | "
        f"{sweep / single:.2f}x the single run (target <= 1.15) |",
        f"| depth-100 again, warm cache | {warm:.3f} | {single / warm:.0f}x faster than "
        "cold (target >= 20) |",
        "",
    ]
    print("\n".join(lines), flush=True)
    return lines


# precision / backend variants of evalkit's own scorers (``build_scorer``, ``score``)
CROSS_ENCODER_VARIANTS = [
    ("torch fp32", []),
    ("torch bf16", ["reranker.dtype=bf16"]),
    ("ONNX Runtime int8", ["reranker.backend=onnx", "reranker.quantize=int8"]),
]
BIENCODER_VARIANTS = [
    ("torch fp32", ["reranker=biencoder_packaged"]),
    ("torch bf16", ["reranker=biencoder_packaged", "reranker.dtype=bf16"]),
]


def part_variants(overrides, ranked, queries, texts) -> list[str]:
    """evalkit's scorers (the path a run takes) on the same 400 pairs, each variant a fresh
    scorer, one warm-up call, then one timed ``score`` over all pairs."""
    pairs = [
        (q, texts[d])
        for q, d in zip(ranked.query_id.map(dict(queries)), ranked.doc_id, strict=True)
    ][:400]
    rows = []
    shared = [o for o in overrides if not o.startswith("reranker")]
    for family, base, variants in (
        ("cross-encoder (random weights)", overrides, CROSS_ENCODER_VARIANTS),
        ("all-MiniLM-L6-v2 (real) as bi-encoder scorer", shared, BIENCODER_VARIANTS),
    ):
        reference = None
        for name, extra in variants:
            scorer = build_scorer(validate(compose(base + extra)))
            scorer.score(pairs[:32])  # warm-up (and an export, cached, on first use)
            seconds, scores = timed(lambda s=scorer: s.score(pairs))
            reference = scores if reference is None else reference
            rho = spearmanr(reference, scores)[0]
            rows.append((f"{family}, {name}", len(pairs) / seconds, rho))
            print(rows[-1], flush=True)
    lines = [
        "### 4. precision and backends (400 pairs, evalkit's scorers)",
        "",
        "| scorer | pairs/s | Spearman vs fp32 |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {rate:.1f} | {rho:.4f} |" for name, rate, rho in rows]
    return [*lines, ""]


if __name__ == "__main__":
    main()
