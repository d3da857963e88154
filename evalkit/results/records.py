"""Typed records that cross module borders: a system's latency, a system, number checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from evalkit.results.identity import Identity

if TYPE_CHECKING:
    from evalkit.results.run_result import RunResult


@dataclass(frozen=True)
class Latency:
    """Online latency of one system and where the numbers came from."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    qps: float | None = None
    source: str = "not measured"
    samples: list[float] = field(default_factory=list, repr=False)
    not_model_share: float | None = None  # of the rerank stage: tokenize, batching, copies
    predicted_p95_ms: float | None = None  # over every query, from its shape (a prediction)
    prediction_checked: bool | None = None  # its check on the timed queries passed


@dataclass
class System:
    """One evaluated system (a first stage alone, or a two-stage system) from one folder."""

    identity: Identity
    per_query: pd.DataFrame  # index query_id, one column per measure
    latency: Latency
    folder: Path
    hardware: str
    quality_meaningful: bool = True
    pairs_per_second: float | None = None
    pairs_per_second_source: str | None = None
    usd_per_1k_queries: float | None = None  # a priced second stage (evalkit.measure.cost)
    recall_at_depth: float | None = None
    relevance_level: int = 1
    measured_alone: bool = True  # a first stage from a run without a reranker
    also_in: list[Path] = field(default_factory=list)
    result: RunResult | None = field(default=None, repr=False)  # the run it came from

    @property
    def key(self) -> str:
        return self.identity.key

    @property
    def reranked(self) -> bool:
        return self.identity.reranked

    @property
    def dataset(self) -> str:
        return self.identity.dataset_name


@dataclass(frozen=True)
class Costs:
    """Per-query online cost of each part (ms), from the run's latency sample."""

    first_stage_ms: np.ndarray
    rerank_ms: np.ndarray  # rerank stage at the run's depth
    depth: int

    def implied(self, share: float, samples: int = 4000, seed: int = 0) -> tuple[float, float]:
        """Mean and p95 of the end-to-end latency when a ``share`` of queries rerank:
        a mixture of the measured first-stage and rerank samples."""
        if not len(self.first_stage_ms):
            return (float("nan"), float("nan"))
        rng = np.random.default_rng(seed)
        first = rng.choice(self.first_stage_ms, samples)
        rerank = rng.choice(self.rerank_ms, samples) if len(self.rerank_ms) else np.zeros(samples)
        total = first + np.where(rng.random(samples) < share, rerank, 0.0)
        return float(total.mean()), float(np.percentile(total, 95))


class SelectiveInputs(NamedTuple):
    """What a selective-reranking analysis reads of one reranked run."""

    never: pd.Series  # the measure per query without reranking (index query_id)
    always: pd.Series  # ... and with reranking
    features: pd.DataFrame  # per-query features (first-stage score shape, query predictors)
    costs: Costs


def is_number(value) -> bool:
    """A finite real number (not None, not NaN)."""
    return isinstance(value, int | float | np.number) and math.isfinite(float(value))

