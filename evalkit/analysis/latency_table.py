"""The report's latency table: every system's p50/p95 with its CI and n, QPS, pairs/s, the
share of the rerank stage that is not the model, the predicted p95 over all queries with
its check, and -- when the report has a decision -- each system's verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from evalkit.analysis.report import Report
    from evalkit.results import System


def latency_table(report: Report) -> pd.DataFrame:
    """Every system's latency with its source (cost-only systems included)."""
    rows = [
        {
            "dataset": s.dataset,
            "system": report.labels[s.key],
            "p50_ms": s.latency.p50_ms,
            "p95_ms": s.latency.p95_ms,
            "p95_ci_low_ms": p95_ci_bound(s, 0),
            "p95_ci_high_ms": p95_ci_bound(s, 1),
            "queries": len(s.latency.samples),
            "qps": s.latency.qps,
            "pairs_per_second": s.pairs_per_second,
            "rerank_not_model_share": s.latency.not_model_share,
            "p95_predicted_all_ms": s.latency.predicted_p95_ms,
            "prediction_check": {True: "passes", False: "fails", None: "—"}[
                s.latency.prediction_checked
            ],
            "usd_per_1k_queries": s.usd_per_1k_queries,
            "quality_meaningful": s.quality_meaningful,
            **({"verdict": verdict_of(report, s)} if report.verdict else {}),
            "latency_source": s.latency.source,
            "folder": str(s.folder),
        }
        for s in report.systems
    ]
    return pd.DataFrame(rows).sort_values(["dataset", "p95_ms"], na_position="last")


def verdict_of(report: Report, system) -> str:
    """The decision's latency verdict for ``system`` (fits / out / undetermined; cost-
    only systems get their latency's), "—" for a dataset the decision is not about."""
    if system.dataset != report.verdict.get("dataset"):
        return "—"
    label = report.labels[system.key]
    row = next((r for r in report.verdict.get("considered", []) if r["system"] == label), None)
    if row is None:
        return "—"
    if row.get("state") == "cost-only":  # never chosen; its latency still has a verdict
        why = str(row.get("why", ""))
        said = {"undetermined": "undetermined", "does not fit": "out", "fits": "fits"}
        return next((v for k, v in said.items() if f"latency {k}" in why), "—")
    return str(row.get("state", "—"))


def p95_ci_bound(system: System, side: int) -> float | None:
    from evalkit.measure.online import quantile_ci

    if not system.latency.samples or system.latency.source.startswith("given"):
        return None
    return quantile_ci(system.latency.samples)[side]
