"""The decision: which configuration to run under a latency / throughput budget.

Three small objects: a :class:`Budget` (what the user can afford), a :class:`FitRule`
(does a system fit it, and why not), and a :class:`Decision` (the answer with its evidence,
``render()`` for people and ``to_json()`` for machines). Rule, per dataset:

1. A system *fits* when its p95 is within ``p95_ms``. Without ``qps`` that is the
   closed-loop (one query at a time) p95. With ``qps`` and a load curve
   (``latency.load_qps``), it is the p95 *at that offered load*: read from the measured
   open-loop curve (one replica, interpolated between measured rates; a rate at or past
   saturation does not fit), or simulated for ``replicas`` servers from the measured
   service times. Only runs without a load curve fall back to the throughput bound
   ``qps x depth <= pairs/s`` (a reranker) or ``qps <= closed-loop QPS`` (a first stage),
   labelled as that fallback with the serving model it assumes.
2. Among fitting systems with meaningful quality, the best by ``metric`` wins.
3. If the winner reranks, its gain over its own first stage must be significant (paired
   randomisation test, Holm-corrected, at ``alpha``) and at least ``min_gain``;
   otherwise the answer is to skip reranking and run the best fitting first stage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.analysis.report import Report, compare
from evalkit.errors import ConfigError, DataError, problem
from evalkit.results import is_number

CURVE_RULE = (
    "QPS rule with a load curve: the p95 at the asked offered load, from the open-loop load "
    "test (Poisson arrivals, dynamic batching; measured on one replica, or simulated for "
    "--replicas N from the measured batch service times)"
)
QPS_ASSUMPTION = (
    "fallback QPS rule for runs without a load curve (latency.load_qps): a reranker "
    "sustains Q QPS when Q x depth <= its measured pairs/s, i.e. a server that batches "
    "the pairs of concurrent queries perfectly at the offline throughput, on one replica "
    "of the measured hardware; the p95 used is the one-query-at-a-time (closed-loop) p95, "
    "which grows under load"
)


def _finite(name: str, value, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(problem(f"{name} must be a finite number, found {value!r}", name))
    if positive and value <= 0:
        raise ConfigError(problem(f"{name} must be positive, found {value!r}", name))
    return float(value)


@dataclass(frozen=True)
class Budget:
    """What the deployment can afford and how sure a gain must be.

    Example:
        >>> Budget(p95_ms=50, qps=20).qps
        20.0
        >>> Budget(p95_ms=-1)
        Traceback (most recent call last):
        ...
        evalkit.errors.ConfigError: --p95-ms must be positive, found -1 (--p95-ms)
    """

    p95_ms: float
    qps: float | None = None
    metric: str = "nDCG@10"
    min_gain: float = 0.0
    alpha: float = 0.05
    dataset: str | None = None
    selective: bool = False  # also recommend a per-query policy (see evalkit.analysis.selective)
    max_usd_per_1k: float | None = None  # a priced second stage must cost at most this
    replicas: int | None = None  # with qps: simulate this many replicas from the load curve

    def __post_init__(self) -> None:
        if self.max_usd_per_1k is not None:
            object.__setattr__(
                self,
                "max_usd_per_1k",
                _finite("--max-usd-per-1k", self.max_usd_per_1k, positive=False),
            )
        object.__setattr__(self, "p95_ms", _finite("--p95-ms", self.p95_ms))
        if self.qps is not None:
            object.__setattr__(self, "qps", _finite("--qps", self.qps))
        object.__setattr__(self, "min_gain", _finite("--min-gain", self.min_gain, positive=False))
        if self.replicas is not None:
            if not isinstance(self.replicas, int) or not 1 <= self.replicas <= 1024:
                raise ConfigError(
                    problem(
                        f"--replicas must be an integer from 1 to 1024, found {self.replicas!r}",
                        "--replicas",
                    )
                )
            if self.qps is None:
                raise ConfigError(
                    problem("--replicas needs --qps (the load to simulate)", "--replicas")
                )
        alpha = _finite("--alpha", self.alpha)
        if not alpha < 1:
            raise ConfigError(problem(f"--alpha must be below 1, found {alpha}", "--alpha"))


@dataclass(frozen=True)
class Candidate:
    """What the fit rule reads of a system (a report headline row has these too)."""

    system: str
    p95_ms: float | None
    qps: float | None
    depth: int | None
    pairs_per_second: float | None
    usd_per_1k_queries: float | None = None


@dataclass(frozen=True)
class Verdict:
    fits: bool
    why: str


class FitRule:
    """Does a system (a row of the report's headline) fit the budget?

    ``curves`` maps a system's label to its load curve (``load.json``), when it has one.
    """

    def __init__(self, budget: Budget, curves: dict | None = None) -> None:
        self.budget = budget
        self.curves = curves or {}

    def p95_at_load(self, system: str) -> tuple[float | None, str]:
        """``(p95 at the asked QPS, where it comes from)``; p95 None when it does not hold."""
        from evalkit.measure.load import Batching, Query
        from evalkit.measure.simulate import ServiceModel, predict

        curve, qps, replicas = self.curves[system], self.budget.qps, self.budget.replicas
        if replicas is not None:
            conditions = curve["conditions"]
            point = predict(
                [Query("", int(p), int(t)) for p, t in curve["query_shapes"]],
                ServiceModel.from_dict(curve["service_model"]),
                Batching(conditions["max_batch_pairs"], conditions["max_wait_ms"]),
                qps,
                replicas,
                seed=int(conditions.get("seed", 0)),
            )
            source = f"simulated, {replicas} replica{'s' if replicas > 1 else ''}"
            if point.saturated:
                return None, f"saturates at {qps:g} QPS ({source})"
            return point.p95_ms, source
        points = sorted(curve["points"], key=lambda p: p["offered_qps"])
        saturated = [p["offered_qps"] for p in points if p["saturated"]]
        if saturated and qps >= min(saturated):
            return None, f"saturates at {min(saturated):g} QPS (measured, one replica)"
        calm = [p for p in points if not p["saturated"]]
        if not calm or qps > calm[-1]["offered_qps"]:
            top = calm[-1]["offered_qps"] if calm else 0
            return None, (
                f"the load curve was measured up to {top:g} QPS only (add {qps:g} to "
                "latency.load_qps, or simulate with --replicas)"
            )
        below = [p for p in calm if p["offered_qps"] <= qps]
        above = [p for p in calm if p["offered_qps"] >= qps]
        low = below[-1] if below else above[0]
        high = above[0]
        if high["offered_qps"] == low["offered_qps"]:
            p95 = low["p95_ms"]
        else:
            share = (qps - low["offered_qps"]) / (high["offered_qps"] - low["offered_qps"])
            p95 = low["p95_ms"] + share * (high["p95_ms"] - low["p95_ms"])
        return p95, "measured, one replica"

    def check(self, row) -> Verdict:
        budget = self.budget
        if budget.qps is not None and row.system in self.curves:
            p95, source = self.p95_at_load(row.system)
            if p95 is None:
                return Verdict(False, source)
            if p95 > budget.p95_ms:
                return Verdict(
                    False,
                    f"p95 {p95:.1f} ms at {budget.qps:g} QPS ({source}) exceeds the "
                    f"{budget.p95_ms:g} ms budget",
                )
            return self._cost(row) or Verdict(
                True, f"fits: p95 {p95:.1f} ms at {budget.qps:g} QPS ({source})"
            )
        if not is_number(row.p95_ms):
            return Verdict(False, "no latency measured")
        if row.p95_ms > budget.p95_ms:
            return Verdict(
                False, f"p95 {row.p95_ms:.1f} ms exceeds the {budget.p95_ms:g} ms budget"
            )
        priced = self._cost(row)
        if priced is not None:
            return priced
        if budget.replicas is not None:
            return Verdict(False, "no load curve to simulate replicas from (latency.load_qps)")
        if budget.qps is None:
            return Verdict(True, "fits")
        if is_number(row.depth):
            pairs = row.pairs_per_second
            if not is_number(pairs):
                return Verdict(False, "no sustained pairs/s measured for the QPS check")
            needed = budget.qps * row.depth
            if needed > pairs:
                return Verdict(
                    False,
                    f"{budget.qps:g} QPS x depth {int(row.depth)} = {needed:,.0f} pairs/s "
                    f"exceeds the measured {pairs:,.1f} pairs/s",
                )
            return Verdict(True, "fits")
        if is_number(row.qps) and budget.qps > row.qps:
            return Verdict(False, f"{budget.qps:g} QPS exceeds the measured {row.qps:.1f} QPS")
        return Verdict(True, "fits")

    def _cost(self, row) -> Verdict | None:
        cost, most = getattr(row, "usd_per_1k_queries", None), self.budget.max_usd_per_1k
        if most is not None and is_number(cost) and cost > most:
            return Verdict(False, f"${cost:,.4g} per 1k queries exceeds the ${most:g} budget")
        return None

    def warnings(self, row) -> list[str]:
        """Where the QPS rule's serving assumption is doing the work."""
        qps = self.budget.qps
        if row.system in self.curves:
            return []  # the load curve measured it
        if qps is None or not is_number(row.depth) or not is_number(row.qps) or row.qps >= qps:
            return []
        needed = math.ceil(qps / row.qps)
        return [
            f"{row.system}: one query at a time it measured {row.qps:.2f} QPS, below the asked "
            f"{qps:g}; reaching {qps:g} QPS needs at least {needed} queries in flight, batched "
            "together on the reranker (or that many replicas)"
        ]


def _evidence(row) -> dict:
    """A report headline row as plain JSON values (NaN and NA become None)."""
    out = {}
    for key, value in row._asdict().items():
        if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            value = None
        out[key] = value.item() if hasattr(value, "item") else value
    return out


@dataclass
class Decision:
    """The recommendation for one dataset under a budget, with its evidence."""

    decision: str  # rerank | first_stage | skip_reranking | nothing_fits
    budget: Budget
    dataset: str
    message: str
    recommendation: dict | None = None
    runner_up: dict | None = None
    considered: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    selective: dict | None = None  # with --selective: the per-query policy and its evidence

    def to_json(self) -> dict:
        data = asdict(self)
        data["budget"] = asdict(self.budget)
        return data

    def render(self) -> str:
        lines = [self.message]
        rec = self.recommendation
        if rec:
            ci = f"[{rec['ci_low']:.4f}, {rec['ci_high']:.4f}]"
            qps = f", {rec['qps']:.1f} QPS" if rec.get("qps") else ""
            lines.append(
                f"  {rec['system']}: {rec['measure']} {rec['mean']:.4f} {ci}, p95 "
                f"{rec['p95_ms']:.1f} ms{qps}"
            )
        if self.runner_up:
            lines.append(f"  runner-up {self.runner_up['system']}: {self.runner_up['why_not']}")
        width = max((len(c["system"]) for c in self.considered), default=10) + 2
        for item in self.considered:
            mark = "fits " if item["fits"] else "out  "
            p95 = f"{item['p95_ms']:.1f} ms" if is_number(item["p95_ms"]) else "—"
            mean = f"{item['mean']:.4f}" if is_number(item["mean"]) else "cost-only"
            why = "" if item["why"] == "fits" else item["why"]  # at-load p95s are shown
            cost = item.get("usd_per_1k_queries")
            cost = f"  ${cost:,.4g}/1k queries" if is_number(cost) else ""
            lines.append(
                f"  {mark}{item['system']:<{width}} {mean:>9}  p95 {p95:>11}{cost}  {why}".rstrip()
            )
        if self.selective is not None:
            lines.append(self.selective["message"])
        lines += [f"assumption: {a}" for a in self.assumptions]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def decide(results: str | Path | Report, budget: Budget, bootstrap: int = 1000) -> Decision:
    """Recommend a configuration (or skipping reranking) for ``budget``.

    Args:
        results: a results folder, or a :class:`~evalkit.analysis.report.Report` from ``compare``.
        budget: the latency / QPS budget and significance rules.
        bootstrap: bootstrap samples when ``results`` is a folder.
    """
    if isinstance(results, Report):
        report = results
        if report.metric != budget.metric:  # same systems and table, another headline
            from dataclasses import replace

            report = replace(report, metric=budget.metric, _selective=None, _inputs={})
    else:
        report = compare(results, budget.metric, "auto", bootstrap)
    datasets = sorted({s.dataset for s in report.systems})
    if budget.dataset is not None and budget.dataset not in datasets:
        raise DataError(
            problem(
                f"no runs on dataset '{budget.dataset}'", "--dataset", f"choose one of {datasets}"
            )
        )
    if budget.dataset is None and len(datasets) > 1:
        raise DataError(
            problem(
                f"results cover several datasets {datasets}",
                "--dataset",
                "decide for one at a time: --dataset NAME",
            )
        )
    dataset = budget.dataset or datasets[0]
    if not (report.table.measure == report.metric_for(dataset)).any():
        raise DataError(
            problem(
                f"measure '{budget.metric}' ({report.metric_for(dataset)} on {dataset}) was "
                "not computed by these runs",
                "--metric",
                f"choose one of {sorted(set(report.table.measure))}",
            )
        )
    curves = {
        report.labels[s.key]: s.result.load_curve
        for s in report.systems
        if s.dataset == dataset and s.reranked and s.result is not None and s.result.load_curve
    }
    rule = FitRule(budget, curves)
    headline = report.headline()
    rows = headline[headline.dataset == dataset]
    hardware = sorted({s.hardware for s in report.systems if s.dataset == dataset})
    warnings = []
    if len(hardware) > 1:
        warnings.append(
            f"runs were measured on different hardware {hardware}: their latencies are not "
            "comparable"
        )
    cost_only = [s for s in report.systems if s.dataset == dataset and not s.quality_meaningful]
    considered = [
        {
            "system": r.system,
            "mean": float(r.mean),
            "p95_ms": r.p95_ms,
            "usd_per_1k_queries": getattr(r, "usd_per_1k_queries", None),
            **asdict(rule.check(r)),
        }
        for r in rows.itertuples(index=False)
    ]
    for system in cost_only:
        label = report.labels[system.key]
        verdict = rule.check(
            Candidate(
                label,
                system.latency.p95_ms,
                system.latency.qps,
                system.identity.depth,
                system.pairs_per_second,
                system.usd_per_1k_queries,
            )
        )
        considered.append(
            {
                "system": label,
                "mean": None,
                "p95_ms": system.latency.p95_ms,
                "usd_per_1k_queries": system.usd_per_1k_queries,
                "fits": False,
                "why": "cost-only weights (no quality): latency "
                + ("fits" if verdict.fits else f"does not fit: {verdict.why}"),
            }
        )
    assumptions = []
    if budget.qps is not None:
        if curves:
            assumptions.append(CURVE_RULE)
        if any(r.system not in curves for r in rows.itertuples(index=False)):
            assumptions.append(QPS_ASSUMPTION)
    fitting = sorted(  # best quality first; equal quality: the faster first
        (r for r in rows.itertuples(index=False) if rule.check(r).fits),
        key=lambda r: (-r.mean, r.p95_ms if is_number(r.p95_ms) else math.inf),
    )
    for row in fitting:
        warnings += rule.warnings(row)
    decision = _choose(fitting, budget, rows)
    decision.dataset, decision.considered = dataset, considered
    decision.warnings += warnings
    decision.assumptions = assumptions
    if budget.selective:
        decision.selective = _selective(report, dataset, budget)
    return decision


def _selective(report: Report, dataset: str, budget: Budget) -> dict:
    """The best per-query policy within the budget that beats both never and always."""
    from evalkit.analysis.selective import best_point

    found = []
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
        best = best_point(points, never, always, features, costs, budget.p95_ms, budget.alpha)
        always_row = points[points.policy == "always"].iloc[0]
        if best is not None:
            found.append((best, always_row, label))
    if not found:
        return {
            "decision": "no_policy",
            "message": "Selective: no per-query policy beats both never and always within "
            "the budget (significantly over never, above always where always fits).",
        }
    best, always_row, label = max(found, key=lambda item: item[0]["mean"])
    metric = best.get("measure") or budget.metric
    message = (
        f"Selective: with {label}, rerank {best['share_reranked']:.0%} of queries "
        f"({best['rule']}): {best['gain_over_never']:+.4f} {metric} over never at "
        f"{best['share_reranked']:.0%} of the pairs, implied p95 {best['implied_p95_ms']:.1f} "
        f"ms; always-rerank gains {always_row.gain_over_never:+.4f} at 100% (implied p95 "
        f"{always_row.implied_p95_ms:.1f} ms). Evidence (nested cross-validation: the policy "
        f"chosen on 4/5 of the queries, applied to the rest): "
        f"{best['nested_gain_over_never']:+.4f} over never, randomisation p = "
        f"{best['p_randomization_vs_never']:.3g}."
    )
    clean = {k: (v.item() if hasattr(v, "item") else v) for k, v in best.items()}
    return {"decision": "policy", "system": label, "message": message, "evidence": clean}


def _choose(fitting: list, budget: Budget, rows) -> Decision:
    metric = rows.measure.iloc[0] if len(rows) else budget.metric
    if not fitting:
        timed = [r for r in rows.itertuples(index=False) if is_number(r.p95_ms)]
        fastest = min(timed, key=lambda r: r.p95_ms, default=None)
        message = "No configuration fits the budget."
        if fastest is not None:
            message += f" The fastest measured is {fastest.system} at p95 {fastest.p95_ms:.1f} ms."
        return Decision("nothing_fits", budget, "", message)
    best = fitting[0]
    if not is_number(best.depth):
        rerankers = [r for r in rows.itertuples(index=False) if is_number(r.depth)]
        if any(is_number(r.depth) for r in fitting):
            why = "no fitting reranker scores higher"
        elif rerankers:
            why = "no reranker fits the budget"
        else:
            why = "no reranked system was measured"
        decision = Decision(
            "first_stage", budget, "", f"Skip reranking ({why}): use {best.system}."
        )
        return _with_runner_up(decision, best, fitting, metric)
    p = best.p_randomization_holm
    significant = is_number(p) and p < budget.alpha
    if significant and best.gain >= budget.min_gain:
        message = (
            f"Rerank: use {best.system}: {metric} {best.mean:.4f} ({best.gain:+.4f} over "
            f"{best.baseline}, 95% CI [{best.gain_ci_low:+.4f}, {best.gain_ci_high:+.4f}], "
            f"Holm p = {p:.3g}), p95 {best.p95_ms:.1f} ms."
        )
        return _with_runner_up(Decision("rerank", budget, "", message), best, fitting, metric)
    reason = (
        f"its gain over {best.baseline} ({best.gain:+.4f} {metric}) is "
        + ("not significant" if not significant else f"below --min-gain {budget.min_gain:g}")
        + (f" (Holm-corrected randomisation p = {p:.3g})" if is_number(p) else "")
    )
    first_stages = [r for r in fitting if not is_number(r.depth)]
    message = (
        f"Skip reranking: the best fitting reranker, {best.system}, does not earn its "
        f"cost: {reason}."
    )
    rejected = best
    best = first_stages[0] if first_stages else None
    if best is None:
        message += " No first stage alone was measured; run one (reranker=none)."
        return Decision("skip_reranking", budget, "", message)
    message += f" Run {best.system} alone."
    decision = Decision("skip_reranking", budget, "", message)
    decision = _with_runner_up(decision, best, fitting, metric)
    decision.runner_up = {**_evidence(rejected), "why_not": reason}
    return decision


def _with_runner_up(decision: Decision, best, fitting: list, metric: str) -> Decision:
    decision.recommendation = _evidence(best)
    others = [r for r in fitting if r.system != best.system]
    if others:
        row = others[0]
        if row.mean < best.mean:
            why = f"lower {metric} ({row.mean:.4f} vs {best.mean:.4f})"
        elif row.mean == best.mean:
            slower = (
                f" at a higher p95 ({row.p95_ms:.1f} vs {best.p95_ms:.1f} ms)"
                if is_number(row.p95_ms) and is_number(best.p95_ms)
                else ""
            )
            why = f"the same {metric} ({row.mean:.4f}){slower}"
        else:
            why = "its reranking gain is not significant or below --min-gain"
        decision.runner_up = {**_evidence(row), "why_not": why}
    return decision
