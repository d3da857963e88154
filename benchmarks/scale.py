"""How BM25 and dense search grow with the corpus: 10k, 100k, 1M synthetic documents.

    python benchmarks/scale.py [--sizes 10000 100000 1000000] [--out docs/scale.md]

Corpora are generated, not downloaded: a Zipf(1.1) vocabulary of 200k word types and
log-normal document lengths (median 50 words, like MS MARCO passages). Each measurement
runs in a fresh subprocess so its peak RSS is its own. Dense search uses random unit
384-d float32 embeddings (encoding cost would dominate otherwise) with 100 queries.

Reported: BM25 (evalkit's BM25Retriever on bm25s) index time, peak RSS and per-query
latency; exact dense search (evalkit's blocked exact_top_k) peak RSS above the embedding
matrix, as a multiple of the matrix; FAISS flat / IVF / HNSW build time and per-query
latency. Growth factors per 10x documents follow each table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import emit

QUERIES = 100


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def synthetic_texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, 200_001)
    probabilities = 1 / ranks**1.1
    probabilities /= probabilities.sum()
    lengths = np.clip(rng.lognormal(np.log(50), 0.5, size=count).astype(int), 5, 400)
    words = rng.choice(len(ranks), size=int(lengths.sum()), p=probabilities)
    texts, start = [], 0
    for length in lengths:
        texts.append(" ".join(f"w{w}" for w in words[start : start + length]))
        start += length
    return texts


def bm25_child(size: int) -> dict:
    import pandas as pd

    from evalkit.retrieve.bm25 import BM25Retriever

    texts = synthetic_texts(size)
    corpus = pd.DataFrame({"doc_id": [str(i) for i in range(size)], "title": "", "text": texts})
    queries = pd.DataFrame(
        {
            "query_id": [str(i) for i in range(QUERIES)],
            "text": [" ".join(t.split()[:6]) for t in synthetic_texts(QUERIES, 1)],
        }
    )
    before = current_rss_mib()
    start = time.perf_counter()
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(corpus)
    index_seconds = time.perf_counter() - start
    times = []
    for i in range(QUERIES):
        start = time.perf_counter()
        bm25.search(queries.iloc[i : i + 1], 100)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "index_s": index_seconds,
        "peak_rss_mib": rss_mib(),
        "rss_before_index_mib": before,
        "query_p50_ms": float(np.median(times)),
        "query_p95_ms": float(np.percentile(times, 95)),
    }


def dense_child(size: int, kinds: list[str]) -> dict:
    import faiss  # noqa: F401 - loaded before the baseline so it is not counted
    import torch

    from evalkit.retrieve.dense import exact_top_k
    from evalkit.retrieve.faiss_index import build_index, search_index

    torch.ones(1) @ torch.ones(1)  # initialise torch's CPU kernels before the baseline
    rng = np.random.default_rng(0)
    before = current_rss_mib()
    docs = np.empty((size, 384), dtype=np.float32)
    for start in range(0, size, 10_000):  # fill in place, small temporaries
        block = rng.standard_normal((min(10_000, size - start), 384), dtype=np.float32)
        docs[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    matrix_mib = docs.nbytes / 2**20
    queries = docs[rng.choice(size, QUERIES, replace=False)] + 0.01
    baseline_peak = rss_mib()
    times = []
    for i in range(QUERIES):
        start = time.perf_counter()
        exact_top_k(queries[i : i + 1], docs, 100)
        times.append((time.perf_counter() - start) * 1000)
    exact_peak = rss_mib()
    result = {
        "matrix_mib": matrix_mib,
        "rss_before_matrix_mib": before,
        "exact_peak_over_start_mib": exact_peak - before,
        "exact_peak_ratio": (exact_peak - before) / matrix_mib,
        "exact_growth_during_search_mib": exact_peak - baseline_peak,
        "exact_p50_ms": float(np.median(times)),
        "exact_p95_ms": float(np.percentile(times, 95)),
    }
    for kind in kinds:
        start = time.perf_counter()
        index = build_index(docs, kind)
        build = time.perf_counter() - start
        times = []
        for i in range(QUERIES):
            start = time.perf_counter()
            search_index(index, queries[i : i + 1], 100)
            times.append((time.perf_counter() - start) * 1000)
        result[f"{kind}_build_s"] = build
        result[f"{kind}_p50_ms"] = float(np.median(times))
        del index
    return result


def run_child(kind: str, size: int, extra: list[str]) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(size), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def growth(values: list[float]) -> str:
    return ", ".join(f"{b / a:.1f}x" for a, b in itertools.pairwise(values))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs="+", default=None)
    parser.add_argument("--smoke", action="store_true", help="seconds: 1,000 documents")
    args = parser.parse_args()
    if args.smoke:
        args.sizes = [1000]
    if args.child:
        kind, size, *rest = args.child
        result = bm25_child(int(size)) if kind == "bm25" else dense_child(int(size), rest)
        print(json.dumps(result))
        return
    bm25, dense = [], []
    for size in args.sizes:
        bm25.append(run_child("bm25", size, []))
        kinds = ["flat", "ivf"] + (["hnsw"] if size <= 100_000 else [])
        dense.append(run_child("dense", size, kinds))
        print(size, bm25[-1], dense[-1], flush=True)
    lines = [
        "| documents | BM25 index (s) | BM25 peak RSS (MiB) | BM25 query p50 / p95 (ms) |",
        "|---:|---:|---:|---:|",
    ]
    for size, r in zip(args.sizes, bm25, strict=True):
        lines.append(
            f"| {size:,} | {r['index_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['query_p50_ms']:.1f} / {r['query_p95_ms']:.1f} |"
        )
    lines += [
        "",
        f"Growth per 10x documents — BM25 index time: "
        f"{growth([r['index_s'] for r in bm25])}; peak RSS: "
        f"{growth([r['peak_rss_mib'] for r in bm25])}; query p50: "
        f"{growth([r['query_p50_ms'] for r in bm25])}",
        "",
        "| documents | embedding matrix (MiB) | exact: peak RSS over start (MiB) | "
        "÷ matrix | exact query p50 / p95 (ms) | FAISS flat build (s) / p50 (ms) | "
        "IVF build (s) / p50 (ms) | HNSW build (s) / p50 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in zip(args.sizes, dense, strict=True):
        hnsw = (
            f"{r['hnsw_build_s']:.1f} / {r['hnsw_p50_ms']:.2f}"
            if "hnsw_build_s" in r
            else "not run (build > 10 min here)"
        )
        lines.append(
            f"| {size:,} | {r['matrix_mib']:.0f} | {r['exact_peak_over_start_mib']:.0f} | "
            f"{r['exact_peak_ratio']:.2f} | {r['exact_p50_ms']:.1f} / {r['exact_p95_ms']:.1f} | "
            f"{r['flat_build_s']:.2f} / {r['flat_p50_ms']:.1f} | "
            f"{r['ivf_build_s']:.1f} / {r['ivf_p50_ms']:.2f} | {hnsw} |"
        )
    lines += [
        "",
        f"Growth per 10x documents — exact query p50: "
        f"{growth([r['exact_p50_ms'] for r in dense])}; IVF query p50: "
        f"{growth([r['ivf_p50_ms'] for r in dense])}",
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
