"""Comparisons: result folders -> systems -> one tidy table with CIs and paired tests.

Every run contributes up to two *systems* (:meth:`RunResult.systems`): its first stage,
and the two-stage system when it reranked. Systems are identified by everything that
changes their numbers (:class:`~evalkit.results.Identity`), never by a name: different
systems are never merged, and one system found in several folders (a rerun) is counted
once — the report says which folder it used. Each reranked system is compared with its
own first stage (matched by identity; measured alone when such a run exists) on the same
queries, with a paired t-test and a paired randomisation test, Holm-corrected per measure
across the sweep."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.analysis.latency_table import latency_table, p95_ci_bound
from evalkit.analysis.stats import BOOTSTRAP_SAMPLES, bootstrap_ci, compare_paired, holm
from evalkit.analysis.systems import collect_systems, label_systems, rerun_notes
from evalkit.errors import DataError, problem
from evalkit.measures import canonical_name, measure_name, measure_sort_key
from evalkit.results import RunResult, System, find_results

log = logging.getLogger(__name__)

TEST_COLUMNS = (
    "gain",
    "gain_ci_low",
    "gain_ci_high",
    "p_ttest",
    "p_randomization",
    "wins",
    "ties",
    "losses",
)


@dataclass
class Report:
    """The tidy comparison table and the systems behind it.

    ``table`` has one row per (dataset, system, measure) with CIs, the baseline, the
    paired tests and the system's latency; ``latency_table()`` one row per system
    (cost-only systems included).
    """

    table: pd.DataFrame
    systems: list[System]
    labels: dict[str, str]
    metric: str
    notes: list[str] = field(default_factory=list)
    bootstrap: int = BOOTSTRAP_SAMPLES
    verdict: dict | None = None  # a decision's JSON: the report opens with it
    pairs: pd.DataFrame | None = None  # every pair tested (compare_runs(all_pairs=True))
    _selective: pd.DataFrame | None = field(default=None, repr=False)
    _inputs: dict = field(default_factory=dict, repr=False)

    def selective_inputs(self, system: System, measure: str):
        """``RunResult.selective_inputs`` for a system, computed once per report."""
        key = (system.key, measure)
        if key not in self._inputs:
            self._inputs[key] = system.result.selective_inputs(measure)
        return self._inputs[key]

    def metric_for(self, dataset: str) -> str:
        """The headline measure's column name on ``dataset`` (its relevance level)."""
        levels = {s.relevance_level for s in self.systems if s.dataset == dataset}
        return measure_name(self.metric, max(levels) if levels else 1)

    def headline(self) -> pd.DataFrame:
        """One row per system with meaningful quality, headline measure, best first."""
        parts = [
            self.table[
                (self.table.dataset == dataset)
                & (self.table.measure == self.metric_for(dataset))
                & self.table.quality_meaningful
            ]
            for dataset in sorted(set(self.table.dataset))
        ]
        rows = pd.concat(parts) if parts else self.table.iloc[0:0]
        columns = [
            "dataset",
            "system",
            "depth",
            "measure",
            "mean",
            "ci_low",
            "ci_high",
            "baseline",
            "gain",
            "gain_ci_low",
            "gain_ci_high",
            "p_randomization_holm",
            "wins",
            "ties",
            "losses",
            "recall_at_depth",
            "p50_ms",
            "p95_ms",
            "p95_ci_low_ms",
            "p95_ci_high_ms",
            "latency_queries",
            "qps",
            "pairs_per_second",
            "usd_per_1k_queries",
            "folder",
        ]
        return rows[columns].sort_values(["dataset", "mean"], ascending=[True, False])

    def means(self) -> pd.DataFrame:
        """Mean of every measure: one row per system, measures in natural order."""
        wide = self.table.pivot_table(
            index=["dataset", "system"], columns="measure", values="mean", sort=False
        )
        return wide[sorted(wide.columns, key=measure_sort_key)].reset_index()

    def latency_table(self) -> pd.DataFrame:
        """Every system's latency with its source (cost-only systems included), and its
        verdict when the report has a decision (:mod:`evalkit.analysis.latency_table`)."""
        return latency_table(self)

    def selective(self) -> pd.DataFrame:
        """The per-query selective reranking curve of every reranked system with quality
        (see :mod:`evalkit.analysis.selective`): one row per (system, policy, threshold)."""
        if self._selective is not None:
            return self._selective
        from evalkit.analysis.selective import curve

        frames = []
        for system in self.systems:
            result = system.result
            if not (system.reranked and system.quality_meaningful and result):
                continue
            if not (result.has_run("first_stage") and len(system.per_query)):
                continue
            if (system.identity.reranker or {}).get("policy", "none") != "none":
                continue  # already selective: its curve would be a policy on top of a policy
            measure = self.metric_for(system.dataset)
            never, always, features, costs = self.selective_inputs(system, measure)
            points = curve(never, always, features, costs, bootstrap=min(self.bootstrap, 1000))
            frames.append(
                points.assign(
                    dataset=system.dataset,
                    system=self.labels[system.key],
                    depth=system.identity.depth,
                    measure=measure,
                )
            )
        columns = ["dataset", "system", "depth", "measure"]
        self._selective = (
            pd.concat(frames, ignore_index=True)[
                columns + [c for c in frames[0].columns if c not in columns]
            ]
            if frames
            else pd.DataFrame()
        )
        return self._selective

    def to_dataframe(self) -> pd.DataFrame:
        """The tidy table (a copy)."""
        return self.table.copy()

    def with_metric(self, metric: str) -> Report:
        """The same systems and table with another headline measure."""
        if metric == self.metric:
            return self
        return Report(
            self.table,
            self.systems,
            self.labels,
            metric,
            list(self.notes),
            self.bootstrap,
            self.verdict,
        )

    def shown_headline(self) -> pd.DataFrame:
        """The headline as rendered: no folder column, no cost column when nothing is priced."""
        shown = self.headline().drop(columns=["folder"])
        if shown["usd_per_1k_queries"].isna().all():
            shown = shown.drop(columns=["usd_per_1k_queries"])
        return shown

    def to_markdown(self) -> str:
        """The short headline as Markdown (the best of each column in bold)."""
        from evalkit.analysis.headline import compact_headline
        from evalkit.analysis.render import render_table

        return render_table(compact_headline(self), "markdown")

    def to_latex(self, caption: str | None = None, label: str = "tab:evalkit") -> str:
        """The headline as a booktabs LaTeX table (best bold, significant gains marked)."""
        from evalkit.analysis.headline import to_latex

        return to_latex(self, caption, label)

    def _repr_html_(self) -> str:
        """Notebooks: the verdict (when there is one) and the short headline."""
        from evalkit.analysis.headline import compact_headline, verdict_lines
        from evalkit.analysis.render import _md_to_html, render_table

        verdict = (
            "".join(f"<p>{_md_to_html(line)}</p>" for line in verdict_lines(self.verdict) if line)
            if self.verdict
            else ""
        )
        return verdict + render_table(compact_headline(self), "html")

    def __repr__(self) -> str:
        datasets = sorted({s.dataset for s in self.systems})
        return (
            f"Report({len(self.systems)} systems on {', '.join(datasets)}; headline "
            f"{self.metric}; .headline(), .table, .save(folder), .to_latex())"
        )

    def save(self, out: str | Path, title: str = "evalkit report") -> Path:
        """Write ``report.md``, ``report.html``, ``report.csv`` / ``.parquet``,
        ``latency.csv`` and the plots into ``out`` (see :mod:`evalkit.analysis.render`)."""
        from evalkit.analysis.render import save_report

        return save_report(self, out, title)


def _timed(system: System) -> int | None:
    """How many timed queries the latency rests on (None for a latency the user gave)."""
    if system.latency.source.startswith("given"):
        return None
    return len(system.latency.samples)


def compare(
    results: str | Path | Sequence[RunResult],
    metric: str = "nDCG@10",
    baseline: str = "auto",
    bootstrap: int = BOOTSTRAP_SAMPLES,
) -> Report:
    """Compare every system in ``results`` (a folder or loaded results).

    Args:
        results: a results folder (searched recursively) or :class:`RunResult` objects.
        metric: headline measure (an ir_measures name; ``P@10`` means ``P(rel=2)@10`` on a
            dataset whose relevance level is 2).
        baseline: ``auto`` (each reranked system vs its own first stage) or a system label.
        bootstrap: bootstrap samples for the confidence intervals.
    """
    if not isinstance(bootstrap, int) or not 100 <= bootstrap <= 100_000:
        raise DataError(
            problem(
                f"--bootstrap must be an integer from 100 to 100,000, found {bootstrap}",
                "--bootstrap",
                "2000 (the default) gives CIs stable to the third decimal",
            )
        )
    asked, metric = metric, canonical_name(metric)  # ndcg@10, ndcg_cut_10 -> nDCG@10
    loaded = find_results(results) if isinstance(results, str | Path) else list(results)
    systems = collect_systems(loaded)
    labels = label_systems(systems)
    report = Report(
        pd.DataFrame(), systems, labels, metric, rerun_notes(systems, labels), bootstrap
    )
    for dataset in sorted({s.dataset for s in systems}):
        name = report.metric_for(dataset)
        if not any(name in s.per_query.columns for s in systems if s.dataset == dataset):
            found = sorted({c for s in systems for c in s.per_query.columns}, key=measure_sort_key)
            raise DataError(
                problem(
                    f"measure '{asked}' ({name} on {dataset}) was not computed by these runs",
                    "--metric",
                    f"choose one of {found}",
                )
            )
    report.table = _table(systems, labels, baseline, bootstrap)
    return report


def _baselines(systems: list[System], labels: dict[str, str], baseline: str) -> dict:
    by_key = {s.key: s for s in systems}
    if baseline == "auto":
        return {
            s.key: by_key.get(s.identity.first_stage().key) if s.reranked else None for s in systems
        }
    chosen = {}
    for system in systems:
        matches = [s for s in systems if labels[s.key] == baseline and s.dataset == system.dataset]
        if not matches:
            names = sorted({labels[s.key] for s in systems})
            raise DataError(
                problem(
                    f"baseline '{baseline}' is not among the systems",
                    "--baseline",
                    f"choose one of {names}",
                )
            )
        chosen[system.key] = None if matches[0] is system else matches[0]
    return chosen


def _table(systems, labels, baseline: str, bootstrap: int) -> pd.DataFrame:
    bases = _baselines(systems, labels, baseline)
    rows = []
    for system in systems:
        base = bases[system.key]
        for measure in system.per_query.columns:
            values = system.per_query[measure]
            low, high = bootstrap_ci(values.to_numpy(), samples=bootstrap)
            row = {
                "dataset": system.dataset,
                "system": labels[system.key],
                "retriever": system.identity.retriever.get("name"),
                "reranker": (system.identity.reranker or {}).get("name", "none"),
                "depth": system.identity.depth,
                "measure": measure,
                "mean": float(values.mean()),
                "ci_low": low,
                "ci_high": high,
                "queries": len(values),
                "baseline": labels[base.key] if base is not None else None,
                "baseline_folder": str(base.folder) if base is not None else None,
                "baseline_measured_alone": base.measured_alone if base is not None else None,
                "recall_at_depth": system.recall_at_depth,
                "p50_ms": system.latency.p50_ms,
                "p95_ms": system.latency.p95_ms,
                "p95_ci_low_ms": p95_ci_bound(system, 0),
                "p95_ci_high_ms": p95_ci_bound(system, 1),
                "latency_queries": _timed(system),
                "qps": system.latency.qps,
                "latency_source": system.latency.source,
                "pairs_per_second": system.pairs_per_second,
                "usd_per_1k_queries": system.usd_per_1k_queries,
                "hardware": system.hardware,
                "quality_meaningful": system.quality_meaningful,
                "key": system.key,
                "folder": str(system.folder),
            }
            if base is not None and measure in base.per_query.columns:
                common = values.index.intersection(base.per_query.index)
                result = compare_paired(
                    base.per_query.loc[common, measure].to_numpy(),
                    values.loc[common].to_numpy(),
                    samples=bootstrap,
                )
                row.update({c: getattr(result, c) for c in TEST_COLUMNS})
            rows.append(row)
    table = pd.DataFrame(rows)
    for column in TEST_COLUMNS:
        if column not in table:
            table[column] = np.nan
    for column in ("wins", "ties", "losses", "depth", "queries", "latency_queries"):
        table[column] = table[column].astype("Int64")
    for test in ("p_ttest", "p_randomization"):
        table[f"{test}_holm"] = np.nan
        tested_rows = table[table.quality_meaningful & table[test].notna()]
        for _, group in tested_rows.groupby(["dataset", "measure"]):
            table.loc[group.index, f"{test}_holm"] = holm(group[test].tolist())
    return table
