"""Cross-encoder second stage: sentence-transformers ``CrossEncoder``, raw fp32 logits.

The model is loaded by sentence-transformers; scoring does not go through
``CrossEncoder.predict``. Each unique query and document text is tokenized once
(:class:`~evalkit.models.tokens.TokenStore`), each pair's inputs are assembled from the
two id lists exactly as the tokenizer's pair encoding would build them
(:func:`~evalkit.models.tokens.pair_layout`), and token-budget batches are padded on a
worker thread while the transformers model runs the previous one under
``torch.inference_mode`` (:mod:`evalkit.models.batches`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalkit.errors import ModelError, problem
from evalkit.models.batches import (
    TimeSplit,
    exact_widths,
    run_batches,
    run_with_budget,
    torch_inputs,
)
from evalkit.models.tokens import TokenStore, check_room, pair_layout
from evalkit.rerank.base import Pair

log = logging.getLogger(__name__)

ITEMS_PER_BATCH = 8  # a batch of short pairs holds up to 8 x batch_size of them


class PairScorer:
    """Pairs -> model inputs -> one float per pair, for any forward (torch, ONNX, OpenVINO).

    Args:
        tokenizer: the model's tokenizer.
        forward: ``forward(prepared) -> np.ndarray`` (one logit per row), in the caller's
            thread.
        max_length: the model's truncation length.
        batch_size: sets the padded-token budget of a batch (``batch_size x max_length``).
        token_dir: where token ids are kept between runs (None: memory only).
        inputs: the input names the model takes.
        prepare: ``prepare(features: dict[str, np.ndarray]) -> prepared``, run on the batch
            worker (torch: tensors, pinned and copied to the card on CUDA); default: as is.
        sync: waits for the device after each forward (CUDA), so the split is honest.
    """

    def __init__(
        self,
        tokenizer,
        forward,
        max_length: int | None,
        batch_size: int = 32,
        token_dir: Path | None = None,
        inputs: Sequence[str] = ("input_ids", "token_type_ids", "attention_mask"),
        sync=lambda: None,
        prepare=lambda features: features,
    ) -> None:
        self.tokenizer, self.forward = tokenizer, forward
        self.max_length, self.batch_size = max_length, batch_size
        self.store = TokenStore(tokenizer, token_dir)
        self.layout = pair_layout(tokenizer)
        if self.layout is not None:
            check_room(max_length, self.layout.added, "reranker.max_length")
        if self.layout is None:
            log.warning(
                "%s: pair layout not one evalkit can assemble; tokenizing pairs as text",
                type(tokenizer).__name__,
            )
        self.inputs = tuple(inputs)
        self.sync, self.prepare = sync, prepare
        self.pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
        self.split = TimeSplit()

    def take_split(self) -> TimeSplit:
        """The time split since the last call (then reset)."""
        split, self.split = self.split, TimeSplit()
        return split

    def _ids(self, pairs: Sequence[Pair], fresh_queries: bool = False):
        before = self.store.seconds_tokenizing
        queries = [q for q, _ in pairs]
        q_ids = self.store.fresh(queries) if fresh_queries else self.store.ids(queries)
        d_ids = self.store.ids([d for _, d in pairs])
        self.split.tokenize += self.store.seconds_tokenizing - before
        return q_ids, d_ids

    def token_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Untruncated token count of each pair (special tokens included)."""
        if self.layout is None:
            return pair_token_lengths(self.tokenizer, pairs)
        q_ids, d_ids = self._ids(pairs)
        added = self.layout.added
        return np.fromiter(
            (len(q) + len(d) + added for q, d in zip(q_ids, d_ids, strict=True)),
            dtype=np.int64,
            count=len(pairs),
        )

    def score(self, pairs, on_done=None, lengths=None, progress=None, fresh_queries=False):
        """One float32 per pair, in input order."""
        started = time.perf_counter()
        scores = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return scores
        if self.layout is None:
            q_ids = d_ids = None
            untruncated = pair_token_lengths(self.tokenizer, pairs) if lengths is None else lengths
        else:
            q_ids, d_ids = self._ids(pairs, fresh_queries)
            if not fresh_queries:  # a batch pass: keep its new ids for the next run
                self.store.save()
            added = self.layout.added
            untruncated = np.array(
                [len(q) + len(d) + added for q, d in zip(q_ids, d_ids, strict=True)]
            )
        cap = self.max_length or int(np.max(untruncated))
        widths = np.minimum(np.asarray(untruncated), cap)

        def build(batch):
            if q_ids is None:
                features = self._encode_text([pairs[i] for i in batch])
            else:
                queries, docs = [q_ids[i] for i in batch], [d_ids[i] for i in batch]
                features = self.layout.batch(queries, docs, self.max_length, self.pad_id)
            return self.prepare({k: v for k, v in features.items() if k in self.inputs})

        def done(batch, values):
            values = np.asarray(values, dtype=np.float32).reshape(-1)
            scores[batch] = values
            if on_done is not None:
                on_done([int(i) for i in batch], values)
            if progress is not None:
                progress(len(batch))

        budget = self.batch_size * cap
        run_with_budget(
            widths,
            budget,
            self.batch_size * ITEMS_PER_BATCH,
            lambda batches: run_batches(batches, build, self.forward, done, self.split, self.sync),
            exact_widths(getattr(self, "device", "cpu")),
        )
        self.split.total += time.perf_counter() - started
        return scores

    def score_online(self, pairs) -> np.ndarray:
        """``score`` for one served query: its text is tokenized now, not looked up."""
        return self.score(pairs, fresh_queries=True)

    def _encode_text(self, pairs: list[Pair]) -> dict[str, np.ndarray]:
        before = time.perf_counter()
        encoded = self.tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="np",
        )
        self.split.tokenize += time.perf_counter() - before
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}


def torch_forward(network):
    """``tensors -> logits`` on the transformers model itself, under inference_mode, upcast
    to fp32 before anything ranks on them (the tensors come from :func:`torch_inputs`,
    already on the model's device)."""
    import torch

    def forward(tensors: dict) -> np.ndarray:
        with torch.inference_mode():
            logits = network(**tensors).logits
            return logits.float().reshape(-1).cpu().numpy()  # .cpu() waits for the GPU

    return forward


def cuda_sync(device: str):
    if not str(device).startswith("cuda"):
        return lambda: None
    import torch

    return torch.cuda.synchronize


class CrossEncoderReranker(PairScorer):
    """Scores (query, passage) pairs with a sentence-transformers CrossEncoder, as raw logits.

    Args:
        model: a loaded ``CrossEncoder`` (its transformers model and tokenizer are used).
        batch_size: pairs per forward pass at full length (short pairs batch more: the cap
            is ``batch_size x max_length`` padded tokens; halved on CUDA OOM).
        fingerprint: identity of weights + settings, used as the cache key prefix.
        token_dir: where token ids are kept between runs (``<cache>/tokens``).
    """

    def __init__(
        self,
        model,
        batch_size: int = 32,
        fingerprint: str = "",
        show_progress: bool = True,
        token_dir: Path | None = None,
    ) -> None:
        if int(getattr(model, "num_labels", 1)) != 1:
            raise ModelError(
                problem(
                    f"the reranker has {model.num_labels} output labels, expected 1 relevance "
                    "logit",
                    fix="use a cross-encoder trained for reranking (one output)",
                )
            )
        self.model = model
        self.fingerprint = fingerprint
        self.show_progress = show_progress
        self.device = str(getattr(model, "device", "cpu"))
        network = model.model
        network.eval()
        names = getattr(model.tokenizer, "model_input_names", None) or [
            "input_ids",
            "attention_mask",
        ]
        super().__init__(
            model.tokenizer,
            torch_forward(network),
            getattr(model, "max_seq_length", None) or getattr(model, "max_length", None),
            batch_size,
            token_dir,
            inputs=names,
            sync=cuda_sync(self.device),
            prepare=torch_inputs(self.device),
        )


def pair_token_lengths(tokenizer, pairs: Sequence[Pair]) -> np.ndarray:
    """Untruncated token count of each (query, passage) pair, special tokens included,
    tokenizing the pairs as text (tokenizers whose pair layout cannot be assembled)."""
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
