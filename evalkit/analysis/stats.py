"""Paired statistics over per-query values.

Significance uses scipy: a paired t-test (``scipy.stats.ttest_rel``) and a paired
randomisation (sign-flip permutation) test (``scipy.stats.permutation_test`` with
``permutation_type="samples"``). Confidence intervals are percentile bootstraps over
queries. Holm's step-down correction controls the family-wise error across a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

# one bootstrap setting for the CLI, the API, the report and decide
BOOTSTRAP_SAMPLES = 2000


def bootstrap_ci(
    values: Sequence[float], samples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (queries resampled with replacement)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """System B compared with baseline A on the same queries (B - A)."""

    mean_a: float
    mean_b: float
    gain: float
    gain_ci_low: float
    gain_ci_high: float
    p_ttest: float
    p_randomization: float
    wins: int
    ties: int
    losses: int
    num_queries: int

    def to_dict(self) -> dict:
        return asdict(self)


def compare_paired(
    a: Sequence[float],
    b: Sequence[float],
    samples: int = 2000,
    permutations: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of per-query values (same query order in ``a`` and ``b``).

    Identical inputs give gain 0 and p = 1 for both tests.

    Example:
        >>> c = compare_paired([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
        >>> (c.gain, c.p_ttest, c.p_randomization)
        (0.0, 1.0, 1.0)
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} vs {y.shape}")
    diff = y - x
    if np.all(diff == 0):
        p_t = p_rand = 1.0
    else:
        if np.allclose(diff, diff[0], rtol=0, atol=1e-12):
            p_t = 0.0  # the same non-zero difference on every query: t is infinite
        else:
            p_t = float(scipy_stats.ttest_rel(y, x).pvalue)
        result = scipy_stats.permutation_test(
            (diff,),
            np.mean,
            permutation_type="samples",
            n_resamples=permutations,
            alternative="two-sided",
            random_state=seed,
            vectorized=True,
        )
        p_rand = float(result.pvalue)
    low, high = bootstrap_ci(diff, samples=samples, seed=seed)
    return PairedComparison(
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        gain=float(diff.mean()),
        gain_ci_low=low,
        gain_ci_high=high,
        p_ttest=p_t,
        p_randomization=p_rand,
        wins=int((diff > 0).sum()),
        ties=int((diff == 0).sum()),
        losses=int((diff < 0).sum()),
        num_queries=int(diff.size),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in input order.

    Example:
        >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03])]
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return [float(v) for v in adjusted]
