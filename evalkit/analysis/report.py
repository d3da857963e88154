"""Comparisons: result folders -> systems -> one tidy table with CIs and paired tests.

Every run contributes up to two *systems* (:meth:`RunResult.systems`): its first stage,
and the two-stage system when it reranked. Systems are identified by everything that
changes their numbers (:class:`~evalkit.results.Identity`), never by a name: different
systems are never merged, and one system found in several folders (a rerun) is counted
once — the report says which folder it used. Each reranked system is compared with its
own first stage (matched by identity; measured alone when such a run exists) on the same
queries, with a paired t-test and a paired randomisation test, Holm-corrected per measure
across the sweep.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.analysis.stats import bootstrap_ci, compare_paired, holm
from evalkit.errors import DataError, problem
from evalkit.io import write_parquet, write_text
from evalkit.measures import measure_name, measure_sort_key
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
COUNT_COLUMNS = ("wins", "ties", "losses", "depth", "queries")
MS_COLUMNS = (
    "p50_ms",
    "p95_ms",
    "p95_ci_low_ms",
    "p95_ci_high_ms",
    "p99_ms",
    "implied_mean_ms",
    "implied_p95_ms",
)
RATE_COLUMNS = ("qps", "pairs_per_second", "pairs_per_query")
P_COLUMNS = ("p_ttest", "p_randomization", "p_ttest_holm", "p_randomization_holm")
SIGNED_COLUMNS = ("gain", "gain_ci_low", "gain_ci_high", "gain_over_never")
SHARE_COLUMNS = ("share_reranked", "target_share")
MONEY_COLUMNS = ("usd_per_1k_queries",)


def collect_systems(results: Iterable[RunResult]) -> list[System]:
    """One :class:`System` per identity (``also_in`` names the folders set aside).

    A first stage measured alone (a ``reranker=none`` run) is preferred over the same first
    stage taken from a reranked run: its latency is its own. Otherwise the newest folder
    (by its completion marker) is used.
    """
    chosen: dict[str, System] = {}
    newest: dict[str, float] = {}
    for result in results:
        stamp = result.finished_at()
        for system in result.systems():
            key = system.key
            current = chosen.get(key)
            better = current is None or (
                (system.measured_alone, stamp) > (current.measured_alone, newest[key])
            )
            same_kind = current is not None and current.measured_alone == system.measured_alone
            if better:
                if same_kind:  # a rerun of the same system: remember the folder set aside
                    system.also_in = [*current.also_in, current.folder]
                chosen[key], newest[key] = system, stamp
            elif same_kind:
                current.also_in.append(system.folder)
    return list(chosen.values())


def rerun_notes(systems: Sequence[System], labels: dict[str, str]) -> list[str]:
    """One line per system found in several folders: which folder the report used."""
    notes = []
    for system in systems:
        reruns = [f for f in system.also_in if f != system.folder]
        if reruns:
            notes.append(
                f"{labels[system.key]} ({system.dataset}) was found in {len(reruns) + 1} "
                f"folders (reruns of one system): used {system.folder}, set aside "
                + ", ".join(str(f) for f in reruns)
            )
    return notes


def _short(value: object) -> str:
    """A setting's value as a label shows it: paths by their last part, hashes short."""
    text = str(value)
    if text.startswith(("local:", "hub:")):
        return text.split("|", 1)[0][-8:]
    if "/" in text:
        return text.rstrip("/").rsplit("/", 1)[-1]
    return text


def label_systems(systems: Sequence[System]) -> dict[str, str]:
    """Readable, unique labels: the name plus only the settings that differ.

    Systems sharing a readable name on one dataset get ``[setting=value, ...]`` with the
    settings whose values differ among them (``bm25 → biencoder@5 [max_length=32]``).

    Example: two ``bm25 → biencoder@5`` systems differing in ``reranker.max_length`` are
    labelled ``bm25 → biencoder@5 [max_length=32]`` and ``... [max_length=256]``.
    """
    groups: dict[tuple[str, str], list[System]] = {}
    for system in systems:
        groups.setdefault((system.dataset, system.identity.name()), []).append(system)
    labels: dict[str, str] = {}
    for (_, name), members in groups.items():
        if len(members) == 1:
            labels[members[0].key] = name
            continue
        settings = [m.identity.settings() for m in members]
        keys = sorted({k for s in settings for k in s})
        differing = [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]
        readable = [k for k in differing if not k.endswith(".fingerprint")] or differing
        for member, values in zip(members, settings, strict=True):
            parts = [f"{k.split('.', 1)[1]}={_short(values.get(k))}" for k in readable]
            labels[member.key] = f"{name} [{', '.join(parts)}]" if parts else name
        seen: dict[str, int] = {}
        for member in members:  # identical labels (e.g. same settings, other data): add key
            seen[labels[member.key]] = seen.get(labels[member.key], 0) + 1
        for member in members:
            if seen[labels[member.key]] > 1:
                labels[member.key] += f" #{member.key[:6]}"
    return labels


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
    bootstrap: int = 2000
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
            "qps",
            "pairs_per_second",
            "usd_per_1k_queries",
            "folder",
        ]
        if rows["usd_per_1k_queries"].isna().all():
            columns.remove("usd_per_1k_queries")  # no priced system: no empty column
        return rows[columns].sort_values(["dataset", "mean"], ascending=[True, False])

    def means(self) -> pd.DataFrame:
        """Mean of every measure: one row per system, measures in natural order."""
        wide = self.table.pivot_table(
            index=["dataset", "system"], columns="measure", values="mean", sort=False
        )
        return wide[sorted(wide.columns, key=measure_sort_key)].reset_index()

    def latency_table(self) -> pd.DataFrame:
        """Every system's latency with its source (cost-only systems included)."""
        rows = [
            {
                "dataset": s.dataset,
                "system": self.labels[s.key],
                "p50_ms": s.latency.p50_ms,
                "p95_ms": s.latency.p95_ms,
                "p95_ci_low_ms": _ci(s, 0),
                "p95_ci_high_ms": _ci(s, 1),
                "queries": len(s.latency.samples),
                "qps": s.latency.qps,
                "pairs_per_second": s.pairs_per_second,
                "usd_per_1k_queries": s.usd_per_1k_queries,
                "quality_meaningful": s.quality_meaningful,
                "latency_source": s.latency.source,
                "folder": str(s.folder),
            }
            for s in self.systems
        ]
        return pd.DataFrame(rows).sort_values(["dataset", "p95_ms"], na_position="last")

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

    def to_markdown(self) -> str:
        return render_table(self.headline().drop(columns=["folder"]), "markdown")

    def save(self, out: str | Path, title: str = "evalkit report") -> Path:
        """Write ``report.md``, ``report.html``, ``report.csv`` / ``.parquet``,
        ``latency.csv`` and the plots into ``out``."""
        from evalkit.analysis.plots import write_plots

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_parquet(out / "report.parquet", self.table)
        write_text(out / "report.csv", self.table.to_csv(index=False))
        write_text(out / "latency.csv", self.latency_table().to_csv(index=False))
        selective = self.selective()
        if len(selective):
            write_text(out / "selective.csv", selective.to_csv(index=False))
        figures = write_plots(self, out)
        sections = self._sections(title)
        markdown = [f"# {title}", ""]
        for heading, text, frame in sections:
            markdown += [f"## {heading}", "", text, ""]
            if frame is not None:
                markdown += [render_table(frame, "markdown"), ""]
        markdown += ["## Plots", "", *[f"![{n}]({n}.png)" for n in figures], ""]
        write_text(out / "report.md", "\n".join(markdown))
        write_text(out / "report.html", self._html(title, sections, figures, out))
        return out

    def _sections(self, title: str) -> list[tuple[str, str, pd.DataFrame | None]]:
        hardware = sorted({s.hardware for s in self.systems})
        notes = list(self.notes)
        if len(hardware) > 1:
            notes.append(
                f"Runs were measured on different hardware {hardware}: latencies are not "
                "comparable across them."
            )
        if not all(s.quality_meaningful for s in self.systems):
            notes.append(
                "Systems with random (cost-only) weights are left out of the quality tables; "
                "their latency is in the latency table."
            )
        intro = (
            f"{len(self.systems)} systems; headline measure **{self.metric}**; 95% CIs by "
            f"bootstrap over queries ({self.bootstrap} samples); gain vs the same first stage "
            "without reranking (matched by identity), paired t-test and randomisation test, "
            "Holm-corrected per measure across the sweep. Latency: online p50/p95 per query "
            "(ms), each system from its own measurement."
        )
        return [
            ("Summary", "\n\n".join([intro, *(f"**Note:** {n}" for n in notes)]), None),
            (
                "Headline",
                f"{self.metric} per system, best first (folders: report.csv).",
                self.headline().drop(columns=["folder"]),
            ),
            ("Latency", "Every system, cost-only ones included.", self.latency_table()),
            ("All measures (means)", "Measures in natural order.", self.means()),
            *self._selective_section(),
        ]

    def _selective_section(self) -> list[tuple[str, str, pd.DataFrame | None]]:
        table = self.selective()
        if not len(table):
            return []
        best = (
            table[~table.policy.isin(["oracle", "random"])]
            .sort_values("mean", ascending=False)
            .groupby(["dataset", "system", "policy"], sort=False)
            .head(1)
        )
        shown = best[
            [
                "dataset",
                "system",
                "policy",
                "threshold",
                "share_reranked",
                "pairs_per_query",
                "mean",
                "ci_low",
                "ci_high",
                "gain_over_never",
                "implied_p95_ms",
            ]
        ]
        text = (
            "Per-query selective reranking, computed from these runs (no model call): each "
            "policy decides before the reranker whether to rerank a query; thresholds and "
            "the learned predictor are fitted on the other folds of a 5-fold split over "
            "queries. Best point of each policy below; the whole curve (with `never`, "
            "`always`, `random` at the same share and the `oracle` ceiling) is in "
            "selective.csv and the selective plots."
        )
        return [("Selective reranking", text, shown)]

    def _html(self, title, sections, figures, out: Path) -> str:
        images = "".join(
            f'<figure><img alt="{name}" src="data:image/png;base64,'
            f'{base64.b64encode((out / f"{name}.png").read_bytes()).decode()}"/>'
            f"<figcaption>{name}</figcaption></figure>"
            for name in figures
        )
        body = "".join(
            f"<h2>{html.escape(h)}</h2><p>{_md_to_html(t)}</p>"
            + (render_table(f, "html") if f is not None else "")
            for h, t, f in sections
        )
        style = (
            "body{font-family:sans-serif;max-width:1300px;margin:auto}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
            "padding:3px 6px;text-align:right}td:nth-child(-n+2){text-align:left}"
            "img{max-width:620px}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}<h2>Plots</h2>{images}</body></html>\n"
        )


def _ci(system: System, side: int) -> float | None:
    from evalkit.measure.online import quantile_ci

    if not system.latency.samples:
        return None
    return quantile_ci(system.latency.samples)[side]


def _md_to_html(text: str) -> str:
    escaped = html.escape(text).replace("\n\n", "</p><p>")
    parts = escaped.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


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
    if column in MS_COLUMNS or column in RATE_COLUMNS:
        return f"{float(value):,.1f}"
    if column in P_COLUMNS:
        return f"{float(value):.3g}"
    if column in MONEY_COLUMNS:
        return f"${float(value):,.4g}"
    if column in SHARE_COLUMNS:
        return f"{float(value):.0%}"
    if column in SIGNED_COLUMNS:
        return f"{float(value):+.4f}"
    return f"{float(value):.4f}"


def render_table(frame: pd.DataFrame, kind: str) -> str:
    """A frame as a Markdown or HTML table, every cell through :func:`format_cell`."""
    columns = [str(c) for c in frame.columns]
    rows = [
        [format_cell(c, v) for c, v in zip(columns, row, strict=True)]
        for row in frame.itertuples(index=False)
    ]
    if kind == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def compare(
    results: str | Path | Sequence[RunResult],
    metric: str = "nDCG@10",
    baseline: str = "auto",
    bootstrap: int = 2000,
) -> Report:
    """Compare every system in ``results`` (a folder or loaded results).

    Args:
        results: a results folder (searched recursively) or :class:`RunResult` objects.
        metric: headline measure (an ir_measures name; ``P@10`` means ``P(rel=2)@10`` on a
            dataset whose relevance level is 2).
        baseline: ``auto`` (each reranked system vs its own first stage) or a system label.
        bootstrap: bootstrap samples for the confidence intervals.
    """
    if not isinstance(bootstrap, int) or bootstrap < 100:
        raise DataError(problem(f"--bootstrap must be an integer >= 100, found {bootstrap}"))
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
                    f"measure '{metric}' ({name} on {dataset}) was not computed by these runs",
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
    for column in ("wins", "ties", "losses", "depth", "queries"):
        table[column] = table[column].astype("Int64")
    for test in ("p_ttest", "p_randomization"):
        table[f"{test}_holm"] = np.nan
        tested_rows = table[table.quality_meaningful & table[test].notna()]
        for _, group in tested_rows.groupby(["dataset", "measure"]):
            table.loc[group.index, f"{test}_holm"] = holm(group[test].tolist())
    return table


def build_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    baseline: str = "auto",
    metric: str = "nDCG@10",
    bootstrap: int = 2000,
) -> Path:
    """``evalkit-report``: compare the runs below ``results_dir`` and write the report."""
    results_dir = Path(results_dir)
    report = compare(results_dir, metric, baseline, bootstrap)
    out = Path(out_dir) if out_dir else results_dir / "report"
    return report.save(out, title=f"evalkit report: {results_dir}")
