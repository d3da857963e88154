"""A system's identity: everything that changes its numbers, as data."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace


def _digest(data: object) -> str:
    from evalkit.cache import digest

    return digest(json.dumps(data, sort_keys=True, default=str))


@dataclass(frozen=True)
class Identity:
    """Everything that changes a system's numbers; ``key`` is its digest.

    ``retriever`` and ``reranker`` are flat ``setting -> value`` maps (model fingerprints
    included); ``reranker`` is None for a first stage alone.
    """

    dataset: dict
    retriever: dict
    first_stage_k: int | None  # None: an external run kept whole
    contract: str
    reranker: dict | None = None
    depth: int | None = None

    @property
    def key(self) -> str:
        return _digest(self.to_dict())

    @property
    def reranked(self) -> bool:
        return self.reranker is not None

    @property
    def dataset_name(self) -> str:
        return str(self.dataset["name"])

    def first_stage(self) -> Identity:
        """The identity of this system's first stage alone."""
        return replace(self, reranker=None, depth=None)

    def name(self) -> str:
        """The readable name: ``bm25``, ``bm25 → minilm_l6@100``."""
        first = str(self.retriever.get("name"))
        if self.reranker is None:
            return first
        return f"{first} → {self.reranker.get('name')}@{self.depth}"

    def settings(self) -> dict[str, object]:
        """Flat ``retriever.x`` / ``reranker.x`` settings, for labels that tell systems apart."""
        flat = {f"retriever.{k}": v for k, v in self.retriever.items()}
        if self.reranker is not None:
            flat.update({f"reranker.{k}": v for k, v in self.reranker.items()})
        flat["pipeline.first_stage_k"] = self.first_stage_k
        return flat

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "retriever": self.retriever,
            "first_stage_k": self.first_stage_k,
            "contract": self.contract,
            "reranker": self.reranker,
            "depth": self.depth,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Identity:
        return cls(
            dataset=dict(data["dataset"]),
            retriever=dict(data["retriever"]),
            first_stage_k=None if data["first_stage_k"] is None else int(data["first_stage_k"]),
            contract=str(data["contract"]),
            reranker=dict(data["reranker"]) if data.get("reranker") is not None else None,
            depth=int(data["depth"]) if data.get("depth") is not None else None,
        )
