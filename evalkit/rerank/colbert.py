"""Late interaction (ColBERT) as a second stage, through PyLate.

Each query and each candidate is encoded into one vector per token (queries padded with
``[MASK]`` expansion tokens to ``query_length``, as ColBERT does); a pair's score is
PyLate's MaxSim: for every query token the best dot product over the document's tokens,
summed. Scores are grouped by query, so each query is encoded once per request.

PyLate pins its own sentence-transformers release (``pylate==1.6.0`` needs
``sentence-transformers==5.3.0``); install it with ``pip install 'evalkit[colbert]'`` in
an environment of its own (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.errors import ModelError, problem
from evalkit.rerank.base import Pair


def require_pylate():
    try:
        import pylate  # noqa: F401
    except ImportError:
        raise ModelError(
            problem(
                "reranker=colbert needs PyLate, which is not installed",
                "reranker.kind",
                "pip install 'evalkit[colbert]' (PyLate pins sentence-transformers==5.3.0: "
                "use an environment of its own)",
            )
        ) from None
    from pylate import models, rank

    return models, rank


class ColbertReranker:
    """Scores pairs with a PyLate ColBERT model (MaxSim over token embeddings).

    Args:
        model: a loaded ``pylate.models.ColBERT``.
        batch_size: texts per encoding batch.
        fingerprint: identity of weights + settings (the cache key prefix).
    """

    def __init__(self, model, batch_size: int = 32, fingerprint: str = "") -> None:
        self.model = model
        self.batch_size = batch_size
        self.fingerprint = fingerprint
        self.device = str(getattr(model, "device", "cpu"))
        _, self._rank = require_pylate()

    @property
    def max_length(self) -> int | None:
        return getattr(self.model, "document_length", None)

    def token_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Untruncated document tokens of each pair (the query is padded to a fixed length)."""
        if not pairs:
            return np.zeros(0, dtype=np.int64)
        encoded = self.model.tokenizer(
            [d for _, d in pairs], truncation=False, add_special_tokens=True, verbose=False
        )
        return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64)

    def score(
        self, pairs: Sequence[Pair], on_done=None, lengths: np.ndarray | None = None, progress=None
    ) -> np.ndarray:
        """MaxSim scores in input order; each query's pairs are handed to ``on_done`` as
        soon as they are scored."""
        scores = np.full(len(pairs), np.nan, dtype=np.float32)
        groups: dict[str, list[int]] = {}
        for index, (query, _) in enumerate(pairs):
            groups.setdefault(query, []).append(index)
        for query, indices in groups.items():
            encoded_query = self.model.encode(
                [query], is_query=True, batch_size=1, show_progress_bar=False
            )
            documents = self.model.encode(
                [pairs[i][1] for i in indices],
                is_query=False,
                batch_size=self.batch_size,
                show_progress_bar=False,
            )
            ranked = self._rank.rerank(
                documents_ids=[list(range(len(indices)))],
                queries_embeddings=encoded_query,
                documents_embeddings=[documents],
            )[0]
            values = np.empty(len(indices), dtype=np.float32)
            for item in ranked:
                values[item["id"]] = float(item["score"])
            scores[indices] = values
            if on_done is not None:
                on_done(list(indices), values)
            if progress is not None:
                progress(len(indices))
        return scores


def build_colbert(config):
    """``reranker=colbert``: a PyLate ColBERT from a hub id, a local folder, or random
    weights of the same architecture (``reranker=colbert_costonly``)."""
    from evalkit.config.schema import cache_dir
    from evalkit.models.loading import (
        load_model,
        model_fingerprint,
        resolve_device,
        resolve_dtype,
        resolve_model_path,
    )

    models, _ = require_pylate()
    rr = config.reranker
    device = resolve_device(rr.device)
    # random weights: the base transformer of the same architecture, with PyLate adding its
    # (random) projection to token vectors when it loads it
    path = resolve_model_path(
        rr.model, rr.weights, "bi_encoder", cache_dir(config), "reranker", config.seed
    )
    settings = {"document_length": rr.max_length} if rr.max_length else {}
    model = load_model(
        lambda: models.ColBERT(
            model_name_or_path=path,
            device=device,
            revision=rr.revision,
            model_kwargs={"torch_dtype": resolve_dtype(rr.dtype, device)},
            **settings,
        ),
        config.seed,
        "reranker",
        rr.model,
    )
    return ColbertReranker(
        model,
        batch_size=rr.batch_size,
        fingerprint=model_fingerprint(rr, path, f"colbert|{model.query_length}"),
    )
