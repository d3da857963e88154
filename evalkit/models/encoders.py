"""The bi-encoder wrapper and the batching helpers every model shares.

* :class:`BiEncoder` -> ``encode(texts, prefix) -> float32 [n, d]`` (normalised)
* :func:`run_with_backoff` -> chunked calls that halve the batch on CUDA out-of-memory

Second-stage scorers live in :mod:`evalkit.rerank` and use these helpers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from evalkit.models.batches import (
    TimeSplit,
    exact_widths,
    run_batches,
    run_with_budget,
    torch_inputs,
)
from evalkit.models.batches import is_out_of_memory as is_out_of_memory
from evalkit.models.tokens import check_room

log = logging.getLogger(__name__)


def run_with_backoff(
    items: Sequence,
    batch_size: int,
    compute: Callable[[Sequence, int], np.ndarray],
    on_done: Callable[[int, np.ndarray], None] | None = None,
    chunk_batches: int = 8,
    flatten: bool = True,
) -> np.ndarray:
    """Run ``compute(chunk, batch_size)`` over ``items`` in chunks, halving on OOM: the one
    out-of-memory back-off of every model (scores, and embeddings with ``flatten=False``).

    Results of finished chunks are kept (and handed to ``on_done(start, values)`` so a
    caller can persist them) when a later chunk runs out of memory; the failed chunk is
    retried with half the batch size, down to 1.
    """
    results: list[np.ndarray] = []
    start = 0
    while start < len(items):
        chunk = items[start : start + batch_size * chunk_batches]
        try:
            values = np.asarray(compute(chunk, batch_size), dtype=np.float32)
            values = values.reshape(-1) if flatten else values
        except RuntimeError as error:
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            _empty_cuda_cache()
            batch_size = max(1, batch_size // 2)
            log.warning("out of memory: halving the batch size to %d and retrying", batch_size)
            continue
        results.append(values)
        if on_done is not None:
            on_done(start, values)
        start += len(chunk)
    return np.concatenate(results) if results else np.zeros(0, dtype=np.float32)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def encode_bar(total: int, show: bool):
    """The ``encode`` bar: texts encoded, shown from 256 texts up."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encode", unit="text", disable=not show or total < 256)


class BiEncoder:
    """A sentence-transformers bi-encoder producing normalised float32 embeddings.

    Texts go through the input path the cross-encoders use (each unique text tokenized
    once, inputs assembled from its ids, token-budget batches padded on a worker, the
    model's own modules run under ``inference_mode``); models whose layout or pooling
    that path does not reproduce, and several GPUs, use ``SentenceTransformer.encode``.
    """

    def __init__(
        self, model, batch_size: int = 64, show_progress: bool = True, fingerprint: str = ""
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.fingerprint = fingerprint
        self.split = TimeSplit()
        self._path = _TextPath.of(model)

    def take_split(self) -> TimeSplit:
        split, self.split = self.split, TimeSplit()
        return split

    def encode(self, texts: list[str], prefix: str = "", quiet: bool = False) -> np.ndarray:
        """Normalised embeddings of ``prefix + text``; ``quiet`` keeps this call's bar off
        (a caller with its own bar)."""
        show = self.show_progress and not quiet
        if self._path is not None and texts and self.devices() is None:
            return self._path.encode([prefix + t for t in texts], self.batch_size, self.split, show)
        return self._encode_st(texts, prefix, show)

    def _encode_st(self, texts: list[str], prefix: str = "", show: bool = True) -> np.ndarray:
        devices = self.devices()

        def compute(chunk, batch_size):
            return self.model.encode(
                list(chunk),
                prompt=prefix or None,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                **({"device": devices} if devices else {}),
            ).astype(np.float32)

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)

        with encode_bar(len(texts), show) as bar:
            return run_with_backoff(
                texts,
                self.batch_size,
                compute,
                on_done=lambda _, values: bar.update(len(values)),
                chunk_batches=16,
                flatten=False,
            )

    def devices(self) -> list[str] | None:
        """All GPUs of the machine when there are several (sentence-transformers then
        encodes with one process per GPU); None otherwise."""
        import torch

        if str(self.model.device).startswith("cuda") and torch.cuda.device_count() > 1:
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return None

    @property
    def max_length(self) -> int | None:
        return getattr(self.model, "max_seq_length", None)

    @property
    def device(self) -> str:
        return str(getattr(self.model, "device", "cpu"))

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())


class _TextPath:
    """Texts -> ids once -> assembled, batched beside the model -> the model's own modules."""

    def __init__(self, model, inputs) -> None:
        self.model, self.inputs = model, inputs
        self.device = str(model.device)

    @classmethod
    def of(cls, model) -> _TextPath | None:
        from evalkit.models.tokens import TextInputs

        modules = list(model) if hasattr(model, "__iter__") else []
        kinds = [type(m).__name__ for m in modules]
        if not kinds or kinds[0] != "Transformer" or not set(kinds[1:]) <= {"Pooling", "Normalize"}:
            return None
        if any(getattr(m, "include_prompt", True) is False for m in modules):
            return None  # pooling that leaves the prompt out needs its length: ST's path
        tokenizer = getattr(model, "tokenizer", None)
        inputs = TextInputs(tokenizer) if tokenizer is not None else None
        return None if inputs is None or inputs.layout is None else cls(model, inputs)

    def encode(
        self, texts: list[str], batch_size: int, split: TimeSplit, show_progress: bool = False
    ) -> np.ndarray:
        import torch

        prepare = torch_inputs(self.device)

        def forward(features):
            with torch.inference_mode():
                embedded = self.model({**features, "modality": "text"})["sentence_embedding"]
                embedded = torch.nn.functional.normalize(embedded.float(), p=2, dim=1)
                return embedded.cpu().numpy()

        limit = getattr(self.model, "max_seq_length", None)
        return encode_texts(
            texts,
            self.inputs,
            limit,
            batch_size,
            self.device,
            prepare,
            forward,
            split,
            show_progress,
        )


def encode_texts(
    texts: list[str],
    inputs,
    limit: int | None,
    batch_size: int,
    device: str,
    prepare: Callable[[dict], object],
    forward: Callable[[object], np.ndarray],
    split: TimeSplit,
    show_progress: bool = False,
) -> np.ndarray:
    """The text input path every encoder shares (torch, ONNX Runtime, OpenVINO): each
    unique text tokenized once (``inputs``, a :class:`~evalkit.models.tokens.TextInputs`),
    its inputs assembled from the ids, token-budget batches of ``batch_size x limit`` padded
    tokens (one width per batch on CPU) built on a worker beside the model.
    ``prepare(arrays)`` turns a batch's int64 arrays into the model's inputs (on the
    worker), ``forward(prepared) -> float32 [n, d]``; the seconds go to ``split``."""
    import time

    check_room(limit, inputs.layout.added, "retriever.max_length or reranker.max_length")
    started = time.perf_counter()
    store = inputs.store
    before = store.seconds_tokenizing
    ids = store.ids(texts)
    split.tokenize += store.seconds_tokenizing - before
    widths = np.array([len(i) + inputs.layout.added for i in ids])
    widths = np.minimum(widths, limit) if limit else widths
    out: np.ndarray | None = None

    def build(batch):
        return prepare(inputs.features([ids[i] for i in batch], limit))

    def done(batch, values):
        nonlocal out
        if out is None:
            out = np.zeros((len(texts), values.shape[1]), dtype=np.float32)
        out[batch] = values
        bar.update(len(batch))

    cap = limit or int(widths.max())
    with encode_bar(len(texts), show_progress) as bar:
        run_with_budget(
            widths,
            batch_size * cap,
            batch_size * 8,
            lambda batches: run_batches(batches, build, forward, done, split),
            exact_widths(device),
        )
    split.total += time.perf_counter() - started
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
