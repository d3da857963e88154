"""Token-budget batches, built on a background worker while the model runs the last one.

* :func:`token_budget_batches` -> index batches, longest first, each under a cap on padded
  tokens (short pairs share a batch, long ones get small batches); on CPU every batch holds
  rows of one width (:func:`exact_widths`): no padding, no attention mask to apply.
* :func:`pack` -> one padded batch from per-row id lists and shared special tokens.
* :func:`run_batches` -> ``forward(features)`` over the batches, with the next batch padded
  (and, on CUDA, pinned and copied without blocking: :func:`torch_inputs`) on a worker
  thread meanwhile; halves the token budget and rebuilds the rest on CUDA out-of-memory;
  reports finished batches.
* :class:`TimeSplit` -> where the time went: tokenize / wait-for-batch / forward / other.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

PREFETCH = 2  # batches padded ahead of the model


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


@dataclass
class TimeSplit:
    """Seconds of one scoring call, by what they were spent on (CUDA-synchronised)."""

    tokenize: float = 0.0
    wait: float = 0.0
    forward: float = 0.0
    total: float = 0.0

    @property
    def other(self) -> float:
        return max(self.total - self.tokenize - self.wait - self.forward, 0.0)

    def add(self, other: TimeSplit) -> None:
        self.tokenize += other.tokenize
        self.wait += other.wait
        self.forward += other.forward
        self.total += other.total

    def to_dict(self) -> dict:
        share = (self.total - self.forward) / self.total if self.total > 0 else None
        return {
            "tokenize_s": self.tokenize,
            "wait_for_batch_s": self.wait,
            "forward_s": self.forward,
            "other_s": self.other,
            "total_s": self.total,
            "not_model_share": share,
        }


def exact_widths(device: str) -> bool:
    """Whether batches should hold rows of one width only. On CPU a batch of equal-width
    rows has no padding and no attention mask (the attention kernel skips it): measured
    20-30% faster per token than mixed widths, more batches and all (docs/benchmarks.md,
    Session 6). On CUDA a kernel launch costs more than the padding: mixed widths."""
    return not str(device).startswith("cuda")


def token_budget_batches(
    lengths: np.ndarray, max_tokens: int, max_items: int, exact_width: bool = False
) -> list[np.ndarray]:
    """Indices in batches, longest first: a batch grows while ``items x longest`` stays
    within ``max_tokens`` (at least one item) and it holds at most ``max_items``; with
    ``exact_width`` it also never mixes rows of different lengths."""
    lengths = np.maximum(np.asarray(lengths), 1)  # an empty text still takes a row
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        width = int(lengths[order[start]])
        size = max(1, min(max_items, max_tokens // width, len(order) - start))
        if exact_width:  # stop where the width changes (the order is sorted)
            size = int(np.searchsorted(-lengths[order[start : start + size]], -width, "right"))
        batches.append(order[start : start + size])
        start += size
    return batches


Part = tuple[tuple[int, ...] | Sequence[np.ndarray], int]  # (shared or per-row ids, token type)


def pack(parts: Sequence[Part], rows: int, pad_id: int) -> dict[str, np.ndarray]:
    """``input_ids``, ``token_type_ids``, ``attention_mask`` (int64, right-padded) of ``rows``
    rows, each the concatenation of ``parts`` in order. A part is ``(ids, token_type)``:
    ``ids`` is one tuple shared by every row (special tokens) or one array per row (a
    text's kept ids). A fixed number of numpy calls per batch, whatever its size: every
    row's pieces are joined in one ``concatenate``, then reshaped (rows of one width, as on
    CPU) or placed with one scatter (mixed widths)."""
    count = len(parts)
    pieces: list = [None] * (rows * count)
    lengths = np.empty((rows, count), dtype=np.int64)
    for j, (ids, _) in enumerate(parts):
        if isinstance(ids, tuple):
            shared = np.asarray(ids, dtype=np.int64)
            pieces[j::count] = [shared] * rows
            lengths[:, j] = len(shared)
        else:
            pieces[j::count] = ids
            lengths[:, j] = np.fromiter(map(len, ids), dtype=np.int64, count=rows)
    widths = lengths.sum(axis=1)
    width, total = int(widths.max(initial=0)), int(widths.sum())
    flat = np.concatenate(pieces).astype(np.int64, copy=False) if total else np.zeros(0, np.int64)
    kinds = np.tile(np.asarray([kind for _, kind in parts], dtype=np.int64), rows)
    flat_types = np.repeat(kinds, lengths.reshape(-1))
    if rows and (widths == width).all():  # one width: nothing to pad
        ones = np.ones((rows, width), dtype=np.int64)
        return {
            "input_ids": flat.reshape(rows, width),
            "token_type_ids": flat_types.reshape(rows, width),
            "attention_mask": ones,
        }
    first = np.cumsum(widths) - widths  # where each row starts in ``flat``
    at = np.repeat(np.arange(rows) * width - first, widths) + np.arange(total)
    input_ids = np.full((rows, width), pad_id, dtype=np.int64)
    types = np.zeros((rows, width), dtype=np.int64)
    input_ids.reshape(-1)[at] = flat
    types.reshape(-1)[at] = flat_types
    mask = (np.arange(width) < widths[:, None]).astype(np.int64)
    return {"input_ids": input_ids, "token_type_ids": types, "attention_mask": mask}


def torch_inputs(device: str) -> Callable[[dict[str, np.ndarray]], dict]:
    """``prepare`` for a torch model, run on the batch worker: int64 arrays -> tensors; on
    CUDA pinned and copied to the card without blocking, so the copy of the next batch
    overlaps the forward of this one (the caching host allocator keeps a pinned buffer
    until its copy has finished)."""
    import torch

    if not str(device).startswith("cuda"):
        return lambda arrays: {k: torch.from_numpy(v) for k, v in arrays.items()}

    def prepare(arrays: dict[str, np.ndarray]) -> dict:
        return {
            k: torch.from_numpy(v).pin_memory().to(device, non_blocking=True)
            for k, v in arrays.items()
        }

    return prepare


def run_batches(
    batches: list[np.ndarray],
    build: Callable[[np.ndarray], object],
    forward: Callable[[object], np.ndarray],
    on_done: Callable[[np.ndarray, np.ndarray], None],
    split: TimeSplit,
    sync: Callable[[], None] = lambda: None,
) -> None:
    """``forward(build(batch))`` for each batch, ``build`` running on a worker thread up to
    :data:`PREFETCH` batches ahead; ``on_done(indices, values)`` after each. Time spent
    waiting for a built batch goes to ``split.wait``, the forward (synchronised) to
    ``split.forward``. An exception in ``build`` or ``forward`` stops the worker and is
    raised here (a CUDA OOM carries the unfinished batches as ``error.evalkit_left``)."""
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def worker() -> None:
        for batch in batches:
            if stop.is_set():
                return
            try:
                item = (batch, build(batch), None)
            except BaseException as error:  # handed to the caller, raised there
                item = (batch, None, error)
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return

    thread = threading.Thread(target=worker, name="evalkit-batches", daemon=True)
    thread.start()
    try:
        for position in range(len(batches)):
            waited = time.perf_counter()
            batch, features, error = ready.get()
            split.wait += time.perf_counter() - waited
            if error is not None:
                raise error
            started = time.perf_counter()
            try:
                values = forward(features)
                sync()
            except RuntimeError as oom:
                if is_out_of_memory(oom):
                    oom.evalkit_left = batches[position:]  # type: ignore[attr-defined]
                raise
            split.forward += time.perf_counter() - started
            on_done(batch, values)
    finally:
        stop.set()
        thread.join()


def run_with_budget(
    lengths: np.ndarray,
    max_tokens: int,
    max_items: int,
    run: Callable[[list[np.ndarray]], None],
    exact_width: bool = False,
) -> None:
    """``run(batches)`` under a token budget, halving the budget (and rebuilding the
    batches still to do) on CUDA out-of-memory, down to one item per batch."""
    batches = token_budget_batches(lengths, max_tokens, max_items, exact_width)
    while True:
        try:
            run(batches)
            return
        except RuntimeError as error:
            left = getattr(error, "evalkit_left", None)
            if left is None or (max_tokens <= 1 and max_items <= 1):
                raise
            _empty_cuda_cache()
            max_tokens, max_items = max(1, max_tokens // 2), max(1, max_items // 2)
            log.warning("out of memory: halving the batch to %d tokens and retrying", max_tokens)
            rest = np.concatenate(left)
            again = token_budget_batches(lengths[rest], max_tokens, max_items, exact_width)
            batches = [rest[b] for b in again]


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
