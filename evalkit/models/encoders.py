"""The bi-encoder wrapper and the batching helpers every model shares.

* :class:`BiEncoder` -> ``encode(texts, prefix) -> float32 [n, d]`` (normalised)
* :func:`run_with_backoff` -> chunked calls that halve the batch on CUDA out-of-memory

Second-stage scorers live in :mod:`evalkit.rerank` and use these helpers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


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


class BiEncoder:
    """A sentence-transformers bi-encoder producing normalised float32 embeddings."""

    def __init__(
        self, model, batch_size: int = 64, show_progress: bool = True, fingerprint: str = ""
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.fingerprint = fingerprint

    def encode(self, texts: list[str], prefix: str = "") -> np.ndarray:
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
        from tqdm.auto import tqdm

        with tqdm(
            total=len(texts),
            desc="encode",
            unit="text",
            disable=not self.show_progress or len(texts) < 256,
        ) as bar:
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
