"""The decision: which configuration to run under a latency / throughput budget.

Rule, per dataset:

1. A system *fits* when its measured online p95 latency is within ``--p95-ms`` and, if
   ``--qps`` is given, its throughput sustains it: for a reranker, ``qps x depth`` must not
   exceed its measured sustained pairs/s (offline throughput); for a first stage alone,
   ``qps`` must not exceed its measured closed-loop QPS.
2. Among fitting systems, the best by ``--metric`` wins.
3. If the winner reranks, its gain over its own first stage must be significant (paired
   randomisation test, Holm-corrected across the sweep, at ``--alpha``) and at least
   ``--min-gain``; otherwise the recommendation is to skip reranking and run the best
   fitting first stage.

The result carries its evidence: gain with CI and p-values, latency, and for the runner-up
why it lost.
"""

from __future__ import annotations

import math
from pathlib import Path

from evalkit.errors import DataError, problem
from evalkit.report import compare, load_systems


def _fits(row, p95_ms: float, qps: float | None) -> tuple[bool, str]:
    if row.p95_ms is None or (isinstance(row.p95_ms, float) and math.isnan(row.p95_ms)):
        return False, "no latency measured"
    if row.p95_ms > p95_ms:
        return False, f"p95 {row.p95_ms:.1f} ms exceeds the {p95_ms:g} ms budget"
    if qps is None:
        return True, "fits"
    if _is_number(row.depth):
        pairs = row.pairs_per_second
        if not _is_number(pairs):
            return False, "no sustained pairs/s measured for the QPS check"
        needed = qps * row.depth
        if needed > pairs:
            return False, (
                f"{qps:g} QPS x depth {int(row.depth)} = {needed:.0f} pairs/s exceeds "
                f"the measured {pairs:.0f} pairs/s"
            )
        return True, "fits"
    if _is_number(row.qps) and qps > row.qps:
        return False, f"{qps:g} QPS exceeds the measured {row.qps:.1f} QPS"
    return True, "fits"


def _is_number(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _evidence(row) -> dict:
    keys = (
        "system",
        "mean",
        "ci_low",
        "ci_high",
        "baseline",
        "gain",
        "gain_ci_low",
        "gain_ci_high",
        "p_ttest",
        "p_randomization",
        "p_ttest_holm",
        "p_randomization_holm",
        "wins",
        "ties",
        "losses",
        "p50_ms",
        "p95_ms",
        "qps",
        "pairs_per_second",
        "depth",
        "recall_at_depth",
        "hardware",
        "folder",
    )
    out = {}
    for key in keys:
        value = getattr(row, key, None)
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[key] = value.item() if hasattr(value, "item") else value
    return out


def decide(
    results_dir: Path,
    p95_ms: float,
    qps: float | None = None,
    metric: str = "nDCG@10",
    min_gain: float = 0.0,
    alpha: float = 0.05,
    dataset: str | None = None,
    bootstrap: int = 1000,
) -> dict:
    """Recommend a configuration (or skipping reranking) for a budget; see module doc."""
    if p95_ms <= 0:
        raise DataError(problem(f"--p95-ms must be positive, found {p95_ms}"))
    systems = load_systems(Path(results_dir))
    datasets = sorted({s.dataset for s in systems})
    if dataset is None and len(datasets) > 1:
        raise DataError(
            problem(
                f"results cover several datasets {datasets}",
                fix="decide for one at a time: --dataset NAME",
            )
        )
    dataset = dataset or datasets[0]
    systems = [s for s in systems if s.dataset == dataset]
    if not any(metric in s.per_query.columns for s in systems):
        raise DataError(problem(f"measure '{metric}' was not computed by these runs"))
    table = compare(systems, metric, bootstrap=bootstrap).table
    rows = table[table.measure == metric].sort_values("mean", ascending=False)
    hardware = sorted(set(rows.hardware))
    warnings = []
    if len(hardware) > 1:
        warnings.append(
            f"runs were measured on different hardware {hardware}: their "
            "latencies are not comparable"
        )
    if not rows.quality_meaningful.all():
        warnings.append(
            "some systems use random (cost-only) weights: their quality is not "
            "meaningful and they are left out"
        )
        rows = rows[rows.quality_meaningful]
    verdicts = [(row, *_fits(row, p95_ms, qps)) for row in rows.itertuples(index=False)]
    fitting = [row for row, ok, _ in verdicts if ok]
    budget = {
        "p95_ms": p95_ms,
        "qps": qps,
        "metric": metric,
        "min_gain": min_gain,
        "alpha": alpha,
        "dataset": dataset,
    }
    considered = [
        {
            "system": row.system,
            "mean": float(row.mean),
            "p95_ms": row.p95_ms,
            "fits": ok,
            "why": why,
        }
        for row, ok, why in verdicts
    ]
    if not fitting:
        fastest = min(
            (r for r, _, _ in verdicts if _is_number(r.p95_ms)),
            key=lambda r: r.p95_ms,
            default=None,
        )
        return {
            "decision": "nothing_fits",
            "budget": budget,
            "recommendation": None,
            "message": "No configuration fits the budget."
            + (
                f" The fastest measured is {fastest.system} at p95 {fastest.p95_ms:.1f} ms."
                if fastest is not None
                else ""
            ),
            "considered": considered,
            "warnings": warnings,
        }
    best = fitting[0]
    decision, message = "use", f"Use {best.system}."
    if _is_number(best.depth):
        p = best.p_randomization_holm
        significant = _is_number(p) and p < alpha
        if not significant or best.gain < min_gain:
            reason = (
                f"its gain over {best.baseline} ({best.gain:+.4f} {metric}) is "
                + ("not significant" if not significant else f"below --min-gain {min_gain}")
                + (f" (Holm-corrected randomisation p = {p:.3g})" if _is_number(p) else "")
            )
            first_stages = [r for r in fitting if not _is_number(r.depth)]
            rejected = best
            best = first_stages[0] if first_stages else None
            decision = "skip_reranking"
            message = (
                f"Skip reranking: the best fitting reranker, {rejected.system}, does not "
                f"earn its cost: {reason}."
            )
            if best is None:
                message += " No first stage alone was measured; run one (reranker=none)."
            else:
                message += f" Run {best.system} alone."
        else:
            message = (
                f"Rerank: use {best.system}: {metric} {best.mean:.4f} "
                f"({best.gain:+.4f} over {best.baseline}, 95% CI "
                f"[{best.gain_ci_low:+.4f}, {best.gain_ci_high:+.4f}], Holm p = {p:.3g}), "
                f"p95 {best.p95_ms:.1f} ms."
            )
    runner_up = None
    if best is not None:
        others = [(row, ok, why) for row, ok, why in verdicts if row.system != best.system]
        if others:
            row, ok, why = others[0]
            if ok:
                why = (
                    f"lower {metric} ({row.mean:.4f} vs {best.mean:.4f})"
                    if row.mean <= best.mean
                    else "reranking gain not significant or below --min-gain"
                )
            runner_up = {**_evidence(row), "why_not": why}
    return {
        "decision": decision,
        "budget": budget,
        "recommendation": _evidence(best) if best is not None else None,
        "message": message,
        "runner_up": runner_up,
        "considered": considered,
        "warnings": warnings,
    }


def render_decision(decision: dict) -> str:
    lines = [decision["message"]]
    rec = decision.get("recommendation")
    if rec:
        lines.append(
            f"  {rec['system']}: {decision['budget']['metric']} {rec['mean']:.4f} "
            f"[{rec['ci_low']:.4f}, {rec['ci_high']:.4f}], p95 "
            f"{rec['p95_ms']:.1f} ms" + (f", {rec['qps']:.1f} QPS" if rec.get("qps") else "")
        )
    runner = decision.get("runner_up")
    if runner:
        lines.append(f"  runner-up {runner['system']}: {runner['why_not']}")
    for item in decision.get("considered", []):
        mark = "fits " if item["fits"] else "out  "
        p95 = f"{item['p95_ms']:.1f} ms" if _is_number(item["p95_ms"]) else "—"
        lines.append(
            f"  {mark}{item['system']:<40} {item['mean']:.4f}  p95 {p95}  "
            f"{'' if item['fits'] else item['why']}"
        )
    for warning in decision.get("warnings", []):
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
