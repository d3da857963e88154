"""Decision rules as objects: each answers one question about one system.

A :class:`Rule` has ``check(row) -> Verdict | None``: a verdict that rules the system out
(``out``), one that cannot decide on the evidence (``undetermined``), one that says it fits
with a note, or None when the rule has nothing to say about that system. :class:`FitRules`
composes the budget's rules in a fixed order (latency, cost, throughput); the first ``out``
wins, else the first ``undetermined``. A new rule is one class.

Latency is decided from the interval, never the point estimate alone: a system *fits*
when the upper end of its p95's distribution-free 95% CI is within the budget, is *out*
when the lower end exceeds it, and is *undetermined* otherwise -- with how many more timed
queries would decide it.

``row`` is anything with the :class:`Candidate` attributes (a report headline row has
them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from evalkit.analysis.budget import Budget
from evalkit.results import is_number
from evalkit.results.run_records import LoadCurve

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


@dataclass(frozen=True)
class Candidate:
    """What the rules read of a system (a report headline row has these too)."""

    system: str
    p95_ms: float | None
    qps: float | None
    depth: int | None
    pairs_per_second: float | None
    usd_per_1k_queries: float | None = None


@dataclass(frozen=True)
class Verdict:
    """``fits``, ``out`` or ``undetermined`` (the evidence cannot tell yet), and why."""

    state: str
    why: str

    @property
    def fits(self) -> bool:
        return self.state == "fits"


class Rule(Protocol):
    def check(self, row) -> Verdict | None: ...


def p95_at_load(curve: LoadCurve, qps: float, replicas: int | None) -> tuple[float | None, str]:
    """``(p95 at the offered load, where it comes from)``; p95 None when it does not hold:
    simulated for ``replicas``, else interpolated on the measured one-replica curve."""
    if replicas is not None:
        from evalkit.measure.load import Batching, Query
        from evalkit.measure.simulate import ServiceModel, predict

        point = predict(
            [Query("", p, t) for p, t in curve.query_shapes],
            ServiceModel.from_dict(curve.service_model),
            Batching(curve.max_batch_pairs, curve.max_wait_ms),
            qps,
            replicas,
            seed=curve.seed,
        )
        source = f"simulated, {replicas} replica{'s' if replicas > 1 else ''}"
        if point.saturated:
            return None, f"saturates at {qps:g} QPS ({source})"
        return point.p95_ms, source
    saturated = [p.offered_qps for p in curve.points if p.saturated]
    if saturated and qps >= min(saturated):
        return None, f"saturates at {min(saturated):g} QPS (measured, one replica)"
    calm = [p for p in curve.points if not p.saturated]
    if not calm or qps > calm[-1].offered_qps:
        top = calm[-1].offered_qps if calm else 0
        return None, (
            f"the load curve was measured up to {top:g} QPS only (add {qps:g} to "
            "latency.load_qps, or simulate with --replicas)"
        )
    below = [p for p in calm if p.offered_qps <= qps]
    low = below[-1] if below else calm[0]
    high = next(p for p in calm if p.offered_qps >= qps)
    if high.offered_qps == low.offered_qps:
        return low.p95_ms, "measured, one replica"
    share = (qps - low.offered_qps) / (high.offered_qps - low.offered_qps)
    return low.p95_ms + share * (high.p95_ms - low.p95_ms), "measured, one replica"


class LatencyFit:
    """The p95 within ``--p95-ms``: at ``--qps`` from the system's load curve when it has
    one, else the closed-loop (one query at a time) p95, decided from its 95% CI over the
    system's timed queries (``samples``; a latency the user gave is taken as given)."""

    def __init__(
        self, budget: Budget, curves: dict[str, LoadCurve], samples: dict[str, list] | None = None
    ) -> None:
        self.budget, self.curves, self.samples = budget, curves, samples or {}

    def check(self, row) -> Verdict | None:
        budget = self.budget
        if budget.qps is not None and row.system in self.curves:
            curve = self.curves[row.system]
            p95, source = p95_at_load(curve, budget.qps, budget.replicas)
            if p95 is None:
                return Verdict("out", source)
            at = f"p95 {p95:.1f} ms at {budget.qps:g} QPS ({source})"
            if source.startswith("measured"):
                return _measured_at_load(curve, budget, p95, at)
            if p95 > budget.p95_ms:  # simulated: a point estimate, said so
                return Verdict(
                    "out", f"{at}, a point estimate, exceeds the {budget.p95_ms:g} ms budget"
                )
            return Verdict("fits", f"fits: {at}, a point estimate")
        if not is_number(row.p95_ms):
            return Verdict("out", "no latency measured")
        samples = self.samples.get(row.system)
        if not samples:  # given by the user (a run file's engine): taken as given
            if row.p95_ms > budget.p95_ms:
                return Verdict(
                    "out", f"p95 {row.p95_ms:.1f} ms exceeds the {budget.p95_ms:g} ms budget"
                )
            return None
        return interval_verdict(row.p95_ms, samples, budget.p95_ms)


def _measured_at_load(curve: LoadCurve, budget: Budget, p95: float, at: str) -> Verdict:
    """At a measured rate, the p95's verdict from its interval over that rate's queries;
    between two measured rates, both neighbours must agree (else undetermined)."""
    from evalkit.measure.online import p95_verdict

    calm = [p for p in curve.points if not p.saturated]
    below = [p for p in calm if p.offered_qps <= budget.qps][-1:]
    above = [p for p in calm if p.offered_qps >= budget.qps][:1]
    neighbours = list({id(p): p for p in below + above}.values())
    if not all(p.latencies_ms for p in neighbours):  # load.json from before intervals
        said = "a point estimate: load.json has no per-query latencies"
        if p95 > budget.p95_ms:
            return Verdict("out", f"{at} exceeds the {budget.p95_ms:g} ms budget ({said})")
        return Verdict("fits", f"fits: {at} ({said})")
    states = {p95_verdict(list(p.latencies_ms), budget.p95_ms) for p in neighbours}
    n = ", ".join(f"n={len(p.latencies_ms)} at {p.offered_qps:g} QPS" for p in neighbours)
    if states == {"fits"}:
        return Verdict("fits", f"fits: {at}; the 95% CI is within the budget ({n})")
    if states == {"out"}:
        return Verdict("out", f"{at}: the 95% CI exceeds the {budget.p95_ms:g} ms budget ({n})")
    return Verdict(
        "undetermined",
        f"{at}: the 95% CI straddles the {budget.p95_ms:g} ms budget ({n}); "
        "a longer load test (more queries per rate) would decide",
    )


def interval_verdict(p95: float, samples: list, budget_ms: float) -> Verdict | None:
    """The p95's verdict from its distribution-free 95% CI (None when it fits)."""
    from evalkit.measure.online import p95_verdict, quantile_ci, queries_to_decide

    low, high = quantile_ci(samples)
    n = len(samples)
    shown = f"p95 {p95:.1f} ms, 95% CI [{_ms(low)}, {_ms(high)}], n={n}"
    state = p95_verdict(samples, budget_ms)
    if state == "fits":
        return None
    if state == "out":
        return Verdict("out", f"{shown}: exceeds the {budget_ms:g} ms budget")
    needed = queries_to_decide(samples, budget_ms)
    mean_s = float(sum(samples)) / n / 1000
    seconds = (needed - n) * mean_s if needed is not None else 0.0
    span = f"~{seconds / 60:.0f} min" if seconds >= 90 else f"~{seconds:.0f} s"
    take = (
        f"about {needed - n} more timed queries ({span} at the measured rate; raise "
        "latency.max_queries / latency.max_seconds) would decide"
        if needed is not None
        else "its p95 sits on the budget: more queries will not decide it"
    )
    return Verdict("undetermined", f"{shown}: straddles the {budget_ms:g} ms budget; {take}")


def _ms(value) -> str:
    return "—" if value is None else f"{value:.1f}"


class CostFit:
    """A priced second stage costs at most ``--max-usd-per-1k``."""

    def __init__(self, budget: Budget) -> None:
        self.most = budget.max_usd_per_1k

    def check(self, row) -> Verdict | None:
        cost = row.usd_per_1k_queries
        if self.most is not None and is_number(cost) and cost > self.most:
            return Verdict("out", f"${cost:,.4g} per 1k queries exceeds the ${self.most:g} budget")
        return None


class ThroughputFit:
    """Without a load curve, the fallback QPS rule: a reranker sustains ``--qps`` when
    ``qps x depth <= pairs/s``; a first stage when ``qps <=`` its closed-loop QPS."""

    def __init__(self, budget: Budget, curves: dict[str, LoadCurve]) -> None:
        self.budget, self.curves = budget, curves

    def check(self, row) -> Verdict | None:
        qps = self.budget.qps
        if qps is not None and row.system in self.curves:
            return None  # LatencyFit read the load curve
        if self.budget.replicas is not None:
            return Verdict("out", "no load curve to simulate replicas from (latency.load_qps)")
        if qps is None:
            return None
        if is_number(row.depth):
            if not is_number(row.pairs_per_second):
                return Verdict("out", "no sustained pairs/s measured for the QPS check")
            needed = qps * row.depth
            if needed > row.pairs_per_second:
                return Verdict(
                    "out",
                    f"{qps:g} QPS x depth {int(row.depth)} = {needed:,.0f} pairs/s "
                    f"exceeds the measured {row.pairs_per_second:,.1f} pairs/s",
                )
            return None
        if is_number(row.qps) and qps > row.qps:
            return Verdict("out", f"{qps:g} QPS exceeds the measured {row.qps:.1f} QPS")
        return None

    def warnings(self, row) -> list[str]:
        """Where the fallback's serving assumption is doing the work."""
        qps = self.budget.qps
        if row.system in self.curves or qps is None:
            return []
        if not is_number(row.depth) or not is_number(row.qps) or row.qps >= qps:
            return []
        needed = math.ceil(qps / row.qps)
        return [
            f"{row.system}: one query at a time it measured {row.qps:.2f} QPS, below the asked "
            f"{qps:g}; reaching {qps:g} QPS needs at least {needed} queries in flight, batched "
            "together on the reranker (or that many replicas)"
        ]


class FitRules:
    """Does a system fit the budget? The budget's rules in order; the first objection wins.

    ``curves`` maps a system's label to its load curve, when it has one.
    """

    def __init__(
        self,
        budget: Budget,
        curves: dict[str, LoadCurve] | None = None,
        samples: dict[str, list] | None = None,
    ) -> None:
        self.budget = budget
        self.curves = curves or {}
        self.throughput = ThroughputFit(budget, self.curves)
        latency = LatencyFit(budget, self.curves, samples)
        self.rules: list[Rule] = [latency, CostFit(budget), self.throughput]

    def check(self, row) -> Verdict:
        verdicts = [v for v in (rule.check(row) for rule in self.rules) if v is not None]
        for state in ("out", "undetermined"):
            found = next((v for v in verdicts if v.state == state), None)
            if found is not None:
                return found
        return Verdict("fits", verdicts[0].why if verdicts else "fits")

    def warnings(self, row) -> list[str]:
        return self.throughput.warnings(row)

    def assumptions(self, systems: list[str]) -> list[str]:
        """The serving models the QPS verdicts rest on."""
        if self.budget.qps is None:
            return []
        out = [CURVE_RULE] if self.curves else []
        if any(s not in self.curves for s in systems):
            out.append(QPS_ASSUMPTION)
        return out


@dataclass(frozen=True)
class QualityGain:
    """A reranker earns its cost when its gain over its own first stage is significant
    (Holm-corrected randomisation test at ``--alpha``) and at least ``--min-gain``."""

    budget: Budget

    def check(self, row) -> Verdict:
        p = row.p_randomization_holm
        significant = is_number(p) and p < self.budget.alpha
        if significant and row.gain >= self.budget.min_gain:
            return Verdict("fits", "significant gain")
        reason = (
            f"its gain over {row.baseline} ({row.gain:+.4f} {row.measure}) is "
            + (
                "not significant"
                if not significant
                else f"below --min-gain {self.budget.min_gain:g}"
            )
            + (f" (Holm-corrected randomisation p = {p:.3g})" if is_number(p) else "")
        )
        return Verdict("out", reason)
