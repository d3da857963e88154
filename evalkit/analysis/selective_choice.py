"""decide --selective: the per-query policy to run, with evidence that holds out what it fits.

Each reranked system's curve gives a best point whose evidence is a nested cross-validation
(:func:`evalkit.analysis.selective.best_point`); the p-values are then Holm-corrected across
every reranked system tried, as the plain decision's are, and only a point that stays
significant is recommended.
"""

from __future__ import annotations

from evalkit.analysis.budget import Budget
from evalkit.analysis.report import Report
from evalkit.analysis.stats import holm


def choose_policy(report: Report, dataset: str, budget: Budget) -> dict:
    """The best per-query policy within the budget that beats both never and always, its
    nested-CV p-value Holm-corrected across every reranked system (depth) tried, as the
    plain decision's p-values are."""
    tried = _selective_candidates(report, dataset, budget)
    p_values = [item[0]["p_randomization_vs_never"] if item[0] else 1.0 for item in tried]
    corrected = holm(p_values) if p_values else []
    found = [
        (best, always_row, label, p)
        for (best, always_row, label), p in zip(tried, corrected, strict=True)
        if best is not None and p < budget.alpha
    ]
    if not found:
        return {
            "decision": "no_policy",
            "message": "Selective: no per-query policy beats both never and always within "
            f"the budget (significantly over never after Holm's correction across the "
            f"{len(tried)} reranked systems tried, above always where always fits).",
        }
    best, always_row, label, p = max(found, key=lambda item: item[0]["mean"])
    metric = best.get("measure") or budget.metric
    share = best["share_reranked"]
    message = (
        f"Selective: with {label}, rerank {share:.0%} of queries "
        f"({best['rule']}): {best['gain_over_never']:+.4f} {metric} over never at "
        f"{share:.0%} of the pairs, implied p95 {best['implied_p95_ms']:.1f} "
        f"ms; always-rerank gains {always_row.gain_over_never:+.4f} at 100% (implied p95 "
        f"{always_row.implied_p95_ms:.1f} ms). Evidence (nested cross-validation: the policy "
        f"chosen on 4/5 of the queries, applied to the rest): "
        f"{best['nested_gain_over_never']:+.4f} over never, randomisation p = "
        f"{best['p_randomization_vs_never']:.3g}, Holm-corrected across the {len(tried)} "
        f"reranked systems tried: {p:.3g}. (The plain decision tests always reranking "
        "against the first stage; this tests reranking only the chosen queries; both are "
        "corrected across this sweep's systems. A run of the suggested policy is scored on "
        "the queries its threshold was fitted on: read its quality with this estimate.)"
    )
    clean = {k: (v.item() if hasattr(v, "item") else v) for k, v in best.items()}
    clean["p_randomization_vs_never_holm"] = p
    return {"decision": "policy", "system": label, "message": message, "evidence": clean}


def _selective_candidates(report: Report, dataset: str, budget: Budget):
    """Per reranked system with a curve: ``(best point or None, always row, label)`` (the
    best point found at any significance level: the correction comes after)."""
    from evalkit.analysis.selective import best_point

    tried = []
    table = report.selective()
    for system in report.systems:
        label = report.labels[system.key]
        if system.dataset != dataset or not system.reranked or not system.quality_meaningful:
            continue
        points = (
            table[(table.dataset == dataset) & (table.system == label)] if len(table) else table
        )
        if not len(points):
            continue  # no curve for it (already selective, or no first-stage run file)
        never, always, features, costs = report.selective_inputs(system, points.measure.iloc[0])
        best = best_point(points, never, always, features, costs, budget.p95_ms, alpha=1.0)
        tried.append((best, points[points.policy == "always"].iloc[0], label))
    return tried
