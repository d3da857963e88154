"""Batch shapes on CPU: one width per batch against mixed widths, interleaved.

    python benchmarks/batch_shapes.py [--rounds 4] [--out FILE]

1. The near-free cross-encoder (1 layer, hidden 32, MiniLM's tokenizer) on Cranfield's
   BM25 top 100 (22,500 pairs), through ``CrossEncoderReranker`` from a cold token store,
   three ways: mixed-width token-budget batches built on the worker thread (session 5's
   path), one width per batch on the worker (evalkit's CPU path now), and one width per
   batch built in the model's own thread -- each against the bare forward of the same model
   on 32 x 300-token batches, every round;
2. all-MiniLM-L6-v2 encoding 400 Cranfield documents (batch 64): one width per batch, mixed
   widths, and ``SentenceTransformer.encode``, with the largest embedding difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import CRANFIELD, emit, machine, minilm_path
from scoring_path import bare_forward, bm25_pairs, near_free_model


def built_in_thread(batches, build, forward, on_done, split, sync=lambda: None) -> None:
    """``run_batches`` without the worker: build, then forward, one batch at a time."""
    for batch in batches:
        started = time.perf_counter()
        features = build(batch)
        split.wait += time.perf_counter() - started
        started = time.perf_counter()
        values = forward(features)
        sync()
        split.forward += time.perf_counter() - started
        on_done(batch, values)


def cross_encoder_rows(pairs, rounds_n: int, bare_batches: int) -> list[str]:
    import evalkit.rerank.cross_encoder as ce
    from evalkit.models.batches import run_batches

    tiny = near_free_model(Path(tempfile.mkdtemp()) / "tiny", "cpu")
    variants = {
        "mixed widths, worker thread (session 5)": (False, run_batches),
        "one width per batch, worker thread (now)": (True, run_batches),
        "one width per batch, in the model's thread": (True, built_in_thread),
    }
    seconds = {name: [] for name in variants}
    bare: list[float] = []
    reference = None
    try:
        for _ in range(rounds_n):
            bare.append(bare_forward(tiny, "cpu", bare_batches))
            for name, (exact, runner) in variants.items():
                ce.exact_widths = lambda device, exact=exact: exact
                ce.run_batches = runner
                scorer = ce.CrossEncoderReranker(tiny, batch_size=32, show_progress=False)
                started = time.perf_counter()
                scores = scorer.score(pairs)
                seconds[name].append(time.perf_counter() - started)
                reference = scores if reference is None else reference
                assert float(np.abs(scores - reference).max()) < 1e-5
    finally:
        from evalkit.models.batches import exact_widths

        ce.exact_widths, ce.run_batches = exact_widths, run_batches
    lines = [
        f"Near-free cross-encoder, {len(pairs):,} pairs, cold token store:",
        "",
        "| variant | pairs/s (median) | vs bare forward, each round |",
        "|---|---:|---|",
    ]
    for name, values in seconds.items():
        ratios = ", ".join(f"{b * s / len(pairs):.2f}" for b, s in zip(bare, values, strict=True))
        lines.append(f"| {name} | {len(pairs) / statistics.median(values):,.0f} | {ratios} |")
    lines += ["", f"bare forward, 32 x 300 tokens: {statistics.median(bare):,.0f} pairs/s", ""]
    return lines


def bi_encoder_rows(documents: int, rounds_n: int) -> list[str]:
    from sentence_transformers import SentenceTransformer

    import evalkit.models.encoders as encoders
    from evalkit.data import load_beir_folder

    texts = load_beir_folder(CRANFIELD).corpus.text.tolist()[:documents]
    model = SentenceTransformer(minilm_path(), device="cpu")
    reference = model.encode(texts, batch_size=64, normalize_embeddings=True)
    ours = encoders.BiEncoder(model).encode(texts, quiet=True)
    difference = float(np.abs(ours - reference).max())
    rates: dict[str, list[float]] = {"one width": [], "mixed widths": [], "ST encode": []}
    original = encoders.exact_widths
    try:
        for _ in range(rounds_n):
            for name in rates:
                started = time.perf_counter()
                if name == "ST encode":
                    model.encode(texts, batch_size=64, normalize_embeddings=True)
                else:
                    encoders.exact_widths = lambda device, one=name == "one width": one
                    encoders.BiEncoder(model, batch_size=64).encode(texts, quiet=True)
                rates[name].append(len(texts) / (time.perf_counter() - started))
    finally:
        encoders.exact_widths = original
    return [
        f"all-MiniLM-L6-v2, {len(texts)} Cranfield documents, batch 64, docs/s each round:",
        "",
        "| path | docs/s |",
        "|---|---|",
        *(f"| {name} | {' / '.join(f'{r:.1f}' for r in v)} |" for name, v in rates.items()),
        "",
        f"max |evalkit - SentenceTransformer.encode| = {difference:.1e}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="5 queries x 10, 20 documents")
    args = parser.parse_args()
    rounds_n = 1 if args.smoke else args.rounds
    pairs = bm25_pairs(5, 10) if args.smoke else bm25_pairs(None, 100)
    lines = [f"Machine: {machine()}; {rounds_n} interleaved rounds.", ""]
    lines += cross_encoder_rows(pairs, rounds_n, 2 if args.smoke else 60)
    lines += bi_encoder_rows(20 if args.smoke else 400, 1 if args.smoke else 3)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
