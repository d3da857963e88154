"""Cross-encoder second stage: sentence-transformers ``CrossEncoder``, raw fp32 logits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.errors import ModelError, problem
from evalkit.models.encoders import run_with_backoff
from evalkit.rerank.base import Pair


class CrossEncoderReranker:
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
        self.device = str(getattr(model, "device", "cpu"))
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
        return pair_token_lengths(self.model.tokenizer, pairs)

    def score(
        self, pairs: Sequence[Pair], on_done=None, lengths: np.ndarray | None = None, progress=None
    ) -> np.ndarray:
        """Raw fp32 logits for ``pairs`` (in input order), computed longest-first."""
        import torch

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

        if lengths is None:
            lengths = self.token_lengths(pairs)
        return score_longest_first(pairs, lengths, self.batch_size, compute, on_done, progress)


def pair_token_lengths(tokenizer, pairs: Sequence[Pair]) -> np.ndarray:
    """Untruncated token count of each (query, passage) pair, special tokens included."""
    if not pairs:
        return np.zeros(0, dtype=np.int64)
    encoded = tokenizer(
        [q for q, _ in pairs],
        [d for _, d in pairs],
        truncation=False,
        add_special_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(pairs))


def score_longest_first(
    pairs: Sequence[Pair],
    lengths: np.ndarray,
    batch_size: int,
    compute,
    on_done=None,
    progress=None,
) -> np.ndarray:
    """Score ``pairs`` longest first with ``compute(chunk, batch_size)`` (batches of similar
    length pad little; OOM halves the batch), reporting finished chunks to ``on_done`` with
    their input indices; scores come back in input order."""
    if not pairs:
        return np.zeros(0, dtype=np.float32)
    order = np.argsort(-np.asarray(lengths), kind="stable")
    ordered = [pairs[i] for i in order]

    def done(start, values):
        if progress is not None:
            progress(len(values))
        if on_done is not None:
            on_done([int(order[i]) for i in range(start, start + len(values))], values)

    scores_sorted = run_with_backoff(ordered, batch_size, compute, done)
    scores = np.empty(len(pairs), dtype=np.float32)
    scores[order] = scores_sorted
    return scores
