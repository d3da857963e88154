"""The scoring path against the model alone: old path, new path and bare forward, interleaved.

    python benchmarks/scoring_path.py [--rounds 3] [--out docs/scoring_path.md]
    python benchmarks/scoring_path.py --device cuda   # on a GPU machine
    bash benchmarks/gpu_all.sh                         # there: every GPU figure, one command

Cranfield, BM25 top 100 for every query (22,500 pairs), on three models:

1. a near-free cross-encoder (1 layer, hidden 32, random weights, all-MiniLM-L6-v2's
   WordPiece tokenizer): the harness ceiling. Old path (pairs tokenized to sort them,
   then again inside ``CrossEncoder.predict``), new path (``CrossEncoderReranker``: each
   text tokenized once, pairs assembled, token-budget batches padded on a worker), the
   new path with the other batch shape (CPU: mixed widths; CUDA: one width per batch, so
   a GPU run shows which shape CUDA should get), and the bare forward of the same
   transformers model on pre-built 32-pair batches of 300 tokens and on the new path's
   own batches (what is left between that and the new path is evalkit's own time) -- in
   rounds, interleaved, medians reported;
2. the MiniLM-L6 cost-only cross-encoder (full size, random weights) on 10 queries x 100:
   old vs new pairs/s, and one 100-pair query online (``score_online``: its query
   tokenized as served) with the share of its time that was not the forward pass;
3. tokens tokenized per scored pair, old (two passes over every pair's text) and new;
4. host microseconds per pair to build the batches alone (no model), the row-by-row builder
   of before session 9 against the whole-batch one: on a GPU this bounds pairs/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import CRANFIELD, emit, machine, minilm_tokenizer

from evalkit.models.batches import exact_widths


def old_score(model, pairs, batch_size: int) -> np.ndarray:
    """evalkit's scoring before: tokenize every pair to sort by length, then
    ``CrossEncoder.predict`` (which tokenizes every pair again), longest first."""
    import torch

    from evalkit.rerank.cross_encoder import pair_token_lengths

    lengths = pair_token_lengths(model.tokenizer, pairs)
    order = np.argsort(-lengths, kind="stable")
    ordered = [pairs[i] for i in order]
    out = []
    for start in range(0, len(ordered), batch_size * 8):
        logits = model.predict(
            ordered[start : start + batch_size * 8],
            batch_size=batch_size,
            activation_fn=torch.nn.Identity(),
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        out.append(logits.float().cpu().numpy())
    scores = np.empty(len(pairs), dtype=np.float32)
    scores[order] = np.concatenate(out)
    return scores


def new_score(model, pairs, batch_size: int):
    """The path evalkit runs now, from a cold token store (tokenization is counted)."""
    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    scorer = CrossEncoderReranker(model, batch_size=batch_size, show_progress=False)
    return scorer.score(pairs), scorer


def other_shape_score(model, pairs, batch_size: int):
    """The new path with the other batch shape than this device gets (on CUDA one width
    per batch, on CPU mixed widths): the GPU run that decides CUDA's shape measures both."""
    import evalkit.rerank.cross_encoder as ce
    from evalkit.models.batches import exact_widths

    ce.exact_widths = lambda device: not exact_widths(device)
    try:
        return new_score(model, pairs, batch_size)
    finally:
        ce.exact_widths = exact_widths


def bare_forward(model, device: str, batches: int, width: int = 300, size: int = 32) -> float:
    """pairs/s of the transformers model alone on pre-built (size x width) batches."""
    import torch

    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(1000, 20000, (size, width))).to(device)
    feats = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        model.model(**feats)
        sync()
        start = time.perf_counter()
        for _ in range(batches):
            model.model(**feats).logits.float().cpu()
        sync()
    return size * batches / (time.perf_counter() - start)


def own_batches_forward(model, pairs, batch_size: int, device: str) -> float:
    """pairs/s of the transformers model alone on the batches the new path builds for these
    pairs (same widths, same grouping), tokenized and padded beforehand: what is left
    between this and the new path is evalkit's own time."""
    import torch

    from evalkit.models.batches import exact_widths, token_budget_batches
    from evalkit.rerank.cross_encoder import ITEMS_PER_BATCH

    encoded = model.tokenizer(
        [q for q, _ in pairs], [d for _, d in pairs], truncation=True, max_length=512
    )
    widths = np.array([len(ids) for ids in encoded["input_ids"]])
    budget, items = batch_size * 512, batch_size * ITEMS_PER_BATCH  # as the new path's
    built = []
    for batch in token_budget_batches(widths, budget, items, exact_widths(device)):
        rows = model.tokenizer.pad(
            {k: [encoded[k][i] for i in batch] for k in encoded}, return_tensors="pt"
        )
        built.append({k: v.to(device) for k, v in rows.items()})
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        model.model(**built[0])
        sync()
        start = time.perf_counter()
        for features in built:
            model.model(**features).logits.float().cpu()
        sync()
    return len(pairs) / (time.perf_counter() - start)


def row_by_row(layout, q_ids, d_ids, batch, max_length: int, pad_id: int) -> dict:
    """The batch builder before session 9, for comparison: each row assembled, then the
    rows padded in a Python loop."""
    rows = []
    for i in batch:
        keep_a, keep_b = (int(k) for k in layout.kept(len(q_ids[i]), len(d_ids[i]), max_length))
        parts = (layout.prefix, q_ids[i][:keep_a], layout.middle, d_ids[i][:keep_b], layout.suffix)
        ids = np.concatenate([np.asarray(p, dtype=np.int32) for p in parts])
        kinds = zip(parts, layout.types, strict=True)
        rows.append((ids, np.concatenate([np.full(len(p), t, dtype=np.int32) for p, t in kinds])))
    width = max(len(ids) for ids, _ in rows)
    out = {k: np.zeros((len(rows), width), dtype=np.int64) for k in ("ids", "types", "mask")}
    out["ids"][:] = pad_id
    for r, (ids, types) in enumerate(rows):
        out["ids"][r, : len(ids)], out["types"][r, : len(ids)] = ids, types
        out["mask"][r, : len(ids)] = 1
    return out


def host_build(tokenizer, pairs, rounds_n: int) -> list[str]:
    """Host microseconds per pair to build every batch of a run (no model), row by row and
    whole-batch, interleaved, in both batch shapes at the GPU check's batch (128 x 512)."""
    from evalkit.models.batches import token_budget_batches
    from evalkit.models.tokens import TokenStore, pair_layout

    layout, store = pair_layout(tokenizer), TokenStore(tokenizer)
    q_ids, d_ids = store.ids([q for q, _ in pairs]), store.ids([d for _, d in pairs])
    untruncated = [len(a) + len(b) + layout.added for a, b in zip(q_ids, d_ids, strict=True)]
    widths = np.minimum(untruncated, 512)
    lines = ["| batch builder, host time per pair | mixed widths (CUDA) | one width (CPU) |"]
    lines.append("|---|---:|---:|")
    results: dict[str, list[float]] = {}
    for exact in (False, True):
        batches = token_budget_batches(widths, 128 * 512, 128 * 8, exact)
        first = [q_ids[i] for i in batches[0]], [d_ids[i] for i in batches[0]]
        same = layout.batch(*first, 512, 0)["input_ids"]
        assert (row_by_row(layout, q_ids, d_ids, batches[0], 512, 0)["ids"] == same).all()
        fns = {
            "row by row (before)": lambda b=batches: [
                row_by_row(layout, q_ids, d_ids, x, 512, 0) for x in b
            ],
            "whole batch (now)": lambda b=batches: [
                layout.batch([q_ids[i] for i in x], [d_ids[i] for i in x], 512, 0) for x in b
            ],
        }
        for name, secs in rounds(fns, max(rounds_n, 3)).items():
            results.setdefault(name, []).append(1e6 * secs / len(pairs))
    for name, (mixed, one) in results.items():
        lines.append(f"| {name} | {mixed:.1f} us | {one:.1f} us |")
    before, now = results["row by row (before)"][0], results["whole batch (now)"][0]
    lines += [
        "",
        f"whole-batch building takes {before / now:.1f}x less host time (mixed widths); one "
        f"Python thread building at {now:.1f} us per pair caps a run at "
        f"{1e6 / now:,.0f} pairs/s on any card (row by row: {1e6 / before:,.0f})",
        "",
    ]
    return lines


def bm25_pairs(queries: int | None, depth: int) -> list[tuple[str, str]]:
    import bm25s

    from evalkit.data import load_beir_folder
    from evalkit.retrieve.base import doc_texts_by_id

    data = load_beir_folder(CRANFIELD)
    texts = doc_texts_by_id(data.corpus)
    ids = list(texts)
    index = bm25s.BM25()
    index.index(
        bm25s.tokenize([texts[i] for i in ids], stopwords="en", show_progress=False),
        show_progress=False,
    )
    qs = data.queries.text.tolist()[:queries]
    found, _ = index.retrieve(
        bm25s.tokenize(qs, stopwords="en", show_progress=False), k=depth, show_progress=False
    )
    return [(q, texts[ids[j]]) for q, row in zip(qs, found, strict=True) for j in row]


def near_free_model(folder: Path, device: str):
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    return CrossEncoder(str(folder), device=device)


def cost_only_minilm(cache: Path, device: str):
    from sentence_transformers import CrossEncoder

    from evalkit.models.loading import build_random_model

    path = build_random_model("cross-encoder/ms-marco-MiniLM-L6-v2", "cross_encoder", cache)
    return CrossEncoder(str(path), device=device)


def rounds(fns: dict, n: int) -> dict[str, float]:
    """Median seconds of each function, called in interleaved rounds."""
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="5 queries x 10, one round")
    args = parser.parse_args()
    queries, depth, small = (5, 10, 5) if args.smoke else (None, 100, 10)
    rounds_n = 1 if args.smoke else args.rounds
    scratch = Path(tempfile.mkdtemp())
    pairs = bm25_pairs(queries, depth)
    lines = [
        f"Machine: {machine()}; device {args.device}; {len(pairs):,} pairs (Cranfield, "
        f"BM25 top {depth}); medians of {rounds_n} interleaved rounds.",
        "",
    ]

    tiny = near_free_model(scratch / "tiny", args.device)
    new, scorer = new_score(tiny, pairs, 32)
    agree = float(np.abs(new - old_score(tiny, pairs, 32)).max())
    secs = rounds(
        {
            "old": lambda: old_score(tiny, pairs, 32),
            "new": lambda: new_score(tiny, pairs, 32),
            "other": lambda: other_shape_score(tiny, pairs, 32),
        },
        rounds_n,
    )
    other = "mixed widths" if exact_widths(args.device) else "one width per batch"
    bare = bare_forward(tiny, args.device, 5 if args.smoke else 60)
    own = statistics.median(
        own_batches_forward(tiny, pairs, 32, args.device) for _ in range(rounds_n)
    )
    lines += [
        "| near-free cross-encoder | pairs/s | vs bare forward |",
        "|---|---:|---:|",
        f"| old path | {len(pairs) / secs['old']:,.0f} | {bare * secs['old'] / len(pairs):.2f}x |",
        f"| new path | {len(pairs) / secs['new']:,.0f} | {bare * secs['new'] / len(pairs):.2f}x |",
        f"| new path, {other} (the other shape) | {len(pairs) / secs['other']:,.0f} | "
        f"{bare * secs['other'] / len(pairs):.2f}x |",
        f"| bare forward, 32 x 300 tokens | {bare:,.0f} | 1.00x |",
        f"| bare forward on the new path's own batches, pre-built | {own:,.0f} | "
        f"{bare / own:.2f}x |",
        "",
        f"new path vs the model on its own batches: {own * secs['new'] / len(pairs):.2f}x "
        "(the rest is evalkit's tokenizing, batching and bookkeeping)",
        "",
        f"new vs old: {secs['old'] / secs['new']:.2f}x faster; max |new - old| = {agree:.1e}",
        "",
    ]
    untruncated = scorer.token_lengths(pairs) - scorer.layout.added
    old_tokens = 2 * float(untruncated.sum()) / len(pairs)
    new_tokens = scorer.store.tokens_tokenized / len(pairs)
    lines += [
        f"tokens tokenized per scored pair: old {old_tokens:.1f} (two passes over the pair "
        f"text), new {new_tokens:.1f} (each unique text once): {old_tokens / new_tokens:.1f}x "
        "less",
        "",
    ]

    lines += host_build(tiny.tokenizer, pairs, rounds_n)

    minilm = cost_only_minilm(scratch / "cache", args.device)
    some = pairs[: small * depth]
    secs = rounds(
        {"old": lambda: old_score(minilm, some, 32), "new": lambda: new_score(minilm, some, 32)},
        rounds_n,
    )
    _, online = new_score(minilm, some, 32)  # documents' ids kept, as a server keeps them
    online.take_split()
    query = some[:depth]
    started = time.perf_counter()
    online.score_online(query)
    ms = 1000 * (time.perf_counter() - started)
    split = online.take_split()
    overhead = (split.total - split.forward) / split.forward
    lines += [
        "| MiniLM-L6 cost-only cross-encoder | pairs/s |",
        "|---|---:|",
        f"| old path, {len(some):,} pairs | {len(some) / secs['old']:,.1f} |",
        f"| new path, {len(some):,} pairs | {len(some) / secs['new']:,.1f} |",
        "",
        f"one {len(query)}-pair query online: {ms:,.1f} ms; beyond the forward "
        f"{100 * overhead:.1f}% of it (tokenize {1000 * split.tokenize:.1f} ms, "
        f"wait {1000 * split.wait:.1f} ms, other {1000 * split.other:.1f} ms)",
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
