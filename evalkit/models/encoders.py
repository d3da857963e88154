"""Thin wrappers that give evalkit one call per model kind, whatever the backend.

* :class:`BiEncoder` -> ``encode(texts, prefix) -> float32 [n, d]`` (normalised)
* :class:`CrossEncoderScorer` -> ``score(pairs) -> float32 [n]`` raw logits
* :class:`BiEncoderScorer` -> ``score(pairs) -> float32 [n]`` cosine similarities

Scorers sort their input by token length (one global length-bucketed stream), handle
CUDA out-of-memory by halving the batch, and report progress in pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from evalkit.errors import ModelError, problem

log = logging.getLogger(__name__)

Pair = tuple[str, str]


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def run_with_backoff(
    items: Sequence,
    batch_size: int,
    compute: Callable[[Sequence, int], np.ndarray],
    on_done: Callable[[int, np.ndarray], None] | None = None,
    chunk_batches: int = 8,
) -> np.ndarray:
    """Run ``compute(chunk, batch_size)`` over ``items`` in chunks, halving on OOM.

    Results of finished chunks are kept (and handed to ``on_done(start, values)`` so a
    caller can persist them) when a later chunk runs out of memory; the failed chunk is
    retried with half the batch size, down to 1.
    """
    results: list[np.ndarray] = []
    start = 0
    while start < len(items):
        chunk = items[start : start + batch_size * chunk_batches]
        try:
            values = np.asarray(compute(chunk, batch_size), dtype=np.float32).reshape(-1)
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

    def __init__(self, model, batch_size: int = 64, show_progress: bool = True) -> None:
        self.model = model
        self.batch_size = batch_size
        self.show_progress = show_progress

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

        chunks: list[np.ndarray] = []
        with tqdm(
            total=len(texts),
            desc="encode",
            unit="text",
            disable=not self.show_progress or len(texts) < 256,
        ) as bar:
            step = self.batch_size * 16
            for start in range(0, len(texts), step):
                part = texts[start : start + step]
                chunks.append(_encode_with_backoff(part, self.batch_size, compute))
                bar.update(len(part))
        return np.concatenate(chunks)

    def devices(self) -> list[str] | None:
        """All GPUs of the machine when there are several (sentence-transformers then
        encodes with one process per GPU); None otherwise."""
        import torch

        if str(self.model.device).startswith("cuda") and torch.cuda.device_count() > 1:
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return None

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())


def _encode_with_backoff(texts, batch_size, compute) -> np.ndarray:
    while True:
        try:
            return compute(texts, batch_size)
        except RuntimeError as error:
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            _empty_cuda_cache()
            batch_size //= 2
            log.warning("out of memory while encoding: batch size now %d", batch_size)


class CrossEncoderScorer:
    """Scores (query, passage) pairs with a sentence-transformers CrossEncoder, as raw logits.

    Args:
        model: a loaded ``CrossEncoder`` (torch, onnx or openvino backend).
        batch_size: pairs per forward pass (halved automatically on CUDA OOM).
        fingerprint: identity of weights + settings, used as the cache key prefix.
    """

    def __init__(
        self, model, batch_size: int = 32, fingerprint: str = "", show_progress: bool = True
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.fingerprint = fingerprint
        self.show_progress = show_progress
        if int(getattr(model, "num_labels", 1)) != 1:
            raise ModelError(
                problem(
                    f"the reranker has {model.num_labels} output labels, expected 1 relevance "
                    "logit",
                    fix="use a cross-encoder trained for reranking (one output)",
                )
            )

    @property
    def max_length(self) -> int | None:
        return getattr(self.model, "max_length", None)

    def token_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Untruncated token count of each pair (special tokens included)."""
        if not pairs:
            return np.zeros(0, dtype=np.int64)
        encoded = self.model.tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            truncation=False,
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return np.fromiter(
            (len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(pairs)
        )

    def score(
        self, pairs: Sequence[Pair], on_done=None, lengths: np.ndarray | None = None, progress=None
    ) -> np.ndarray:
        """Raw fp32 logits for ``pairs`` (in input order), computed longest-first."""
        import torch

        if not pairs:
            return np.zeros(0, dtype=np.float32)
        if lengths is None:
            lengths = self.token_lengths(pairs)
        order = np.argsort(-lengths, kind="stable")
        ordered = [pairs[i] for i in order]

        def compute(chunk, batch_size):
            logits = self.model.predict(
                list(chunk),
                batch_size=batch_size,
                activation_fn=torch.nn.Identity(),
                convert_to_numpy=False,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
            return logits.float().cpu().numpy()

        def done(start, values):
            if progress is not None:
                progress(len(values))
            if on_done is not None:
                on_done([order[i] for i in range(start, start + len(values))], values)

        scores_sorted = run_with_backoff(ordered, self.batch_size, compute, done)
        scores = np.empty(len(pairs), dtype=np.float32)
        scores[order] = scores_sorted
        return scores


class BiEncoderScorer:
    """Rescores pairs by bi-encoder cosine similarity (a cheap second stage)."""

    def __init__(
        self,
        encoder: BiEncoder,
        query_prefix: str = "",
        passage_prefix: str = "",
        fingerprint: str = "",
    ) -> None:
        self.encoder = encoder
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.fingerprint = fingerprint
        self.max_length = getattr(encoder.model, "max_seq_length", None)

    def token_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        return np.array([len(q.split()) + len(d.split()) for q, d in pairs], dtype=np.int64)

    def score(self, pairs: Sequence[Pair], on_done=None, lengths=None, progress=None):
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        queries = sorted({q for q, _ in pairs})
        docs = sorted({d for _, d in pairs})
        q_index = {text: i for i, text in enumerate(queries)}
        d_index = {text: i for i, text in enumerate(docs)}
        q_emb = self.encoder.encode(queries, self.query_prefix)
        d_emb = self.encoder.encode(docs, self.passage_prefix)
        qi = np.fromiter((q_index[q] for q, _ in pairs), dtype=np.int64, count=len(pairs))
        di = np.fromiter((d_index[d] for _, d in pairs), dtype=np.int64, count=len(pairs))
        scores = np.einsum("ij,ij->i", q_emb[qi], d_emb[di]).astype(np.float32)
        if progress is not None:
            progress(len(pairs))
        if on_done is not None:
            on_done(list(range(len(pairs))), scores)
        return scores
