"""The decision: which configuration to run under a latency / throughput / cost budget.

A :class:`~evalkit.analysis.budget.Budget` (what the user can afford), the rules of
:mod:`evalkit.analysis.rules` (does a system fit, and why not; does a reranker earn its
cost), and a :class:`Decision` (the answer with its evidence, ``render()`` for people and
``to_json()`` for machines). Per dataset:

1. A system *fits* when every fit rule passes (:class:`~evalkit.analysis.rules.FitRules`):
   p95 within ``p95_ms`` (at ``qps`` from the load curve when there is one), cost within
   ``max_usd_per_1k``, and the throughput fallback for runs without a load curve.
2. Among fitting systems with meaningful quality, the best by ``metric`` wins (equal
   quality: the faster).
3. If the winner reranks, it must pass :class:`~evalkit.analysis.rules.QualityGain`;
   otherwise the answer is to skip reranking and run the best fitting first stage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.analysis.budget import Budget
from evalkit.analysis.render import format_cell
from evalkit.analysis.report import Report, compare
from evalkit.analysis.rules import Candidate, FitRules, QualityGain
from evalkit.analysis.selective_choice import choose_policy
from evalkit.analysis.stats import BOOTSTRAP_SAMPLES
from evalkit.errors import DataError, problem
from evalkit.results import is_number

__all__ = ["Budget", "Decision", "decide"]


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
    undetermined: list[str] = field(default_factory=list)  # could win; latency not decided
    axes: dict[str, str] = field(default_factory=dict)  # which axes rest on evidence

    def to_json(self) -> dict:
        data = asdict(self)
        data["budget"] = asdict(self.budget)
        return data

    def _repr_html_(self) -> str:
        """Notebooks: the verdict, the chosen system with its evidence, the budget."""
        from evalkit.analysis.headline import verdict_lines
        from evalkit.analysis.render import _md_to_html

        return "".join(
            f"<p>{_md_to_html(line)}</p>" for line in verdict_lines(self.to_json()) if line
        )

    def __repr__(self) -> str:
        return f"Decision({self.decision!r}: {self.message!r}; .render() for the evidence)"

    def render(self) -> str:
        lines = [self.message]
        rec = self.recommendation
        if rec:
            ci = f"[{rec['ci_low']:.4f}, {rec['ci_high']:.4f}]"
            qps = f", {format_cell('qps', rec['qps'])} QPS" if rec.get("qps") else ""
            n = (
                f" (95% CI {_ci_text(rec)}, n={rec['latency_queries']})"
                if rec.get("latency_queries")
                else ""
            )
            lines.append(
                f"  {rec['system']}: {rec['measure']} {rec['mean']:.4f} {ci}, p95 "
                f"{rec['p95_ms']:.1f} ms{n}{qps}"
            )
        if self.runner_up:
            lines.append(f"  runner-up {self.runner_up['system']}: {self.runner_up['why_not']}")
        width = max((len(c["system"]) for c in self.considered), default=10) + 2
        marks = {"fits": "fits ", "out": "out  ", "undetermined": "undet", "cost-only": "cost "}
        for item in self.considered:
            mark = marks[item["state"]]
            p95 = f"{item['p95_ms']:.1f} ms" if is_number(item["p95_ms"]) else "—"
            n = f" n={item['latency_queries']}" if item.get("latency_queries") else ""
            mean = f"{item['mean']:.4f}" if is_number(item["mean"]) else "cost-only"
            why = "" if item["why"] == "fits" else item["why"]  # at-load p95s are shown
            cost = item.get("usd_per_1k_queries")
            cost = f"  ${cost:,.4g}/1k queries" if is_number(cost) else ""
            lines.append(
                f"  {mark} {item['system']:<{width}} {mean:>9}  p95 {p95:>11}{n:<6}{cost}  "
                f"{why}".rstrip()
            )
        if self.selective is not None:
            lines.append(self.selective["message"])
        lines += [f"assumption: {a}" for a in self.assumptions]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _ci_text(row: dict) -> str:
    low, high = row.get("p95_ci_low_ms"), row.get("p95_ci_high_ms")
    return "[" + ", ".join("—" if v is None else f"{v:.1f}" for v in (low, high)) + "] ms"


def decide(
    results: str | Path | Report, budget: Budget, bootstrap: int = BOOTSTRAP_SAMPLES
) -> Decision:
    """Recommend a configuration (or skipping reranking) for ``budget``.

    Args:
        results: a results folder, or a :class:`~evalkit.analysis.report.Report`.
        budget: the latency / QPS / cost budget and significance rules.
        bootstrap: bootstrap samples when ``results`` is a folder (the report's default).
    """
    if isinstance(results, Report):
        report = results.with_metric(budget.metric)
    else:
        report = compare(results, budget.metric, "auto", bootstrap)
    dataset = _dataset(report, budget)
    rules = FitRules(budget, _curves(report, dataset), _samples(report, dataset))
    headline = report.headline()
    rows = list(headline[headline.dataset == dataset].itertuples(index=False))
    fitting = sorted(  # best quality first; equal quality: the faster first
        (r for r in rows if rules.check(r).fits),
        key=lambda r: (-r.mean, r.p95_ms if is_number(r.p95_ms) else math.inf),
    )
    decision = _choose(fitting, budget, rows, report.metric_for(dataset))
    _say_what_is_undetermined(decision, rows, fitting, rules)
    decision.dataset = dataset
    decision.considered = [_considered(r, rules) for r in rows] + _cost_only(report, dataset, rules)
    decision.warnings += _hardware_warnings(report, dataset)
    for row in fitting:
        decision.warnings += rules.warnings(row)
    decision.assumptions = rules.assumptions([r.system for r in rows])
    if budget.selective:
        decision.selective = choose_policy(report, dataset, budget)
    return decision


def _samples(report: Report, dataset: str) -> dict[str, list]:
    """Each system's timed queries (end to end), for the latency interval; none for a
    latency the user gave (taken as given)."""
    return {
        report.labels[s.key]: list(s.latency.samples)
        for s in report.systems
        if s.dataset == dataset and not s.latency.source.startswith("given")
    }


def _say_what_is_undetermined(decision: Decision, rows: list, fitting: list, rules) -> None:
    """A system that could beat the recommendation but whose fit the evidence cannot tell
    yet is named in the message, with what would decide it; the decision says which
    axes rest on evidence."""
    best = fitting[0].mean if fitting else -math.inf
    open_rows = [r for r in rows if rules.check(r).state == "undetermined" and r.mean > best]
    decision.undetermined = [r.system for r in open_rows]
    decision.axes = {
        "quality": "evidence: paired randomisation test, Holm-corrected across the sweep",
        "latency": "evidence: each p95's distribution-free 95% CI against the budget"
        if not open_rows
        else f"undetermined for {[r.system for r in open_rows]}",
    }
    if open_rows:
        first = open_rows[0]
        decision.message = decision.message.replace(
            "no reranker fits the budget", "no reranker is known to fit the budget yet"
        )
        decision.message = (
            f"Not decided yet: {first.system} ({first.measure} {first.mean:.4f}) could be the "
            f"answer, but {rules.check(first).why}. On the evidence so far: {decision.message}"
        )


def _dataset(report: Report, budget: Budget) -> str:
    """The one dataset to decide for, and a check that the budget's measure exists there."""
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
    return dataset


def _curves(report: Report, dataset: str) -> dict:
    """Each reranked system's load curve on ``dataset``, by label."""
    return {
        report.labels[s.key]: s.result.load_record
        for s in report.systems
        if s.dataset == dataset and s.reranked and s.result is not None and s.result.load_curve
    }


def _considered(row, rules: FitRules) -> dict:
    verdict = rules.check(row)
    return {
        "system": row.system,
        "mean": float(row.mean),
        "p95_ms": row.p95_ms,
        "p95_ci_ms": [_plain(row.p95_ci_low_ms), _plain(row.p95_ci_high_ms)],
        "latency_queries": _plain(row.latency_queries),
        "usd_per_1k_queries": row.usd_per_1k_queries,
        "state": verdict.state,
        "fits": verdict.fits,
        "why": verdict.why,
    }


def _plain(value):
    """A table value as plain JSON (NaN / NA -> None, numpy -> Python)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _cost_only(report: Report, dataset: str, rules: FitRules) -> list[dict]:
    """Random-weight systems: their latency verdict, never a recommendation."""
    out = []
    for system in report.systems:
        if system.dataset != dataset or system.quality_meaningful:
            continue
        label = report.labels[system.key]
        verdict = rules.check(
            Candidate(
                label,
                system.latency.p95_ms,
                system.latency.qps,
                system.identity.depth,
                system.pairs_per_second,
                system.usd_per_1k_queries,
            )
        )
        out.append(
            {
                "system": label,
                "mean": None,
                "p95_ms": system.latency.p95_ms,
                "usd_per_1k_queries": system.usd_per_1k_queries,
                "latency_queries": len(system.latency.samples),
                "state": "cost-only",  # never chosen (no quality); its latency is below
                "fits": False,
                "why": "cost-only weights (no quality): latency "
                + {
                    "fits": "fits",
                    "out": f"does not fit: {verdict.why}",
                    "undetermined": f"undetermined: {verdict.why}",
                }[verdict.state],
            }
        )
    return out


def _hardware_warnings(report: Report, dataset: str) -> list[str]:
    hardware = sorted({s.hardware for s in report.systems if s.dataset == dataset})
    if len(hardware) < 2:
        return []
    return [
        f"runs were measured on different hardware {hardware}: their latencies are not comparable"
    ]


def _choose(fitting: list, budget: Budget, rows: list, metric: str) -> Decision:
    if not fitting:
        timed = [r for r in rows if is_number(r.p95_ms)]
        fastest = min(timed, key=lambda r: r.p95_ms, default=None)
        message = "No configuration fits the budget."
        if fastest is not None:
            message += f" The fastest measured is {fastest.system} at p95 {fastest.p95_ms:.1f} ms."
        return Decision("nothing_fits", budget, "", message)
    best = fitting[0]
    if not is_number(best.depth):
        if any(is_number(r.depth) for r in fitting):
            why = "no fitting reranker scores higher"
        elif any(is_number(r.depth) for r in rows):
            why = "no reranker fits the budget"
        else:
            why = "no reranked system was measured"
        decision = Decision(
            "first_stage", budget, "", f"Skip reranking ({why}): use {best.system}."
        )
        return _with_runner_up(decision, best, fitting, metric)
    verdict = QualityGain(budget).check(best)
    if verdict.fits:
        message = (
            f"Rerank: use {best.system}: {metric} {best.mean:.4f} ({best.gain:+.4f} over "
            f"{best.baseline}, 95% CI [{best.gain_ci_low:+.4f}, {best.gain_ci_high:+.4f}], "
            f"Holm p = {best.p_randomization_holm:.3g}), p95 {best.p95_ms:.1f} ms."
        )
        return _with_runner_up(Decision("rerank", budget, "", message), best, fitting, metric)
    message = (
        f"Skip reranking: the best fitting reranker, {best.system}, does not earn its "
        f"cost: {verdict.why}."
    )
    first_stage = next((r for r in fitting if not is_number(r.depth)), None)
    if first_stage is None:
        message += " No first stage alone was measured; run one (reranker=none)."
        return Decision("skip_reranking", budget, "", message)
    message += f" Run {first_stage.system} alone."
    decision = Decision("skip_reranking", budget, "", message)
    decision = _with_runner_up(decision, first_stage, fitting, metric)
    decision.runner_up = {**_evidence(best), "why_not": verdict.why}
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
