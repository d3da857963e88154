"""One number format for every table evalkit prints: counts, milliseconds, rates,
p-values, gains, shares and money, each by its column."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

COUNT_COLUMNS = ("wins", "ties", "losses", "depth", "queries", "latency_queries")

MS_COLUMNS = (
    "p50_ms",
    "p95_ms",
    "p95_ci_low_ms",
    "p95_ci_high_ms",
    "p99_ms",
    "implied_mean_ms",
    "implied_p95_ms",
    "p95_predicted_all_ms",
)

RATE_COLUMNS = ("qps", "pairs_per_second", "pairs_per_query")

P_COLUMNS = ("p_ttest", "p_randomization", "p_ttest_holm", "p_randomization_holm")

SIGNED_COLUMNS = ("gain", "gain_ci_low", "gain_ci_high", "gain_over_never")

SHARE_COLUMNS = ("share_reranked", "target_share", "rerank_not_model_share")

MONEY_COLUMNS = ("usd_per_1k_queries",)


def format_cell(column: str, value: object) -> str:
    """One rule for every rendering: counts as integers, milliseconds to 0.1, rates to
    0.1, p-values to 3 significant digits, gains signed, other numbers to 4 decimals."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if not isinstance(value, int | float | np.number):
        return str(value)
    if column in COUNT_COLUMNS:
        return str(int(value))
    if column in RATE_COLUMNS and abs(float(value)) < 10:
        return f"{float(value):.3g}"  # 0.047 QPS is not 0.0
    if column in MS_COLUMNS or column in RATE_COLUMNS:
        return f"{float(value):,.1f}"
    if column in P_COLUMNS:
        return f"{float(value):#.3g}"  # 1.00, 0.0460: the same digits everywhere
    if column in MONEY_COLUMNS:
        return f"${float(value):,.4g}"
    if column in SHARE_COLUMNS:
        return f"{float(value):.0%}"
    if column in SIGNED_COLUMNS:
        return f"{float(value):+.4f}"
    return f"{float(value):.4f}"
