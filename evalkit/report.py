"""Aggregate finished runs: one tidy table with CIs, paired significance, latency; plots.

Every run folder contributes up to two *systems*: its first stage alone, and (when it
reranked) the two-stage system. Identical first stages from several runs are one system.
Each system is compared with a baseline on the same queries — by default its own first
stage, i.e. "what did reranking buy?" — with a paired t-test and a paired randomisation
test, Holm-corrected per measure across the sweep.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from evalkit.errors import DataError, problem
from evalkit.io import COMPLETE, write_parquet, write_text
from evalkit.stats import bootstrap_ci, compare_paired, holm
from evalkit.timing import summarize

log = logging.getLogger(__name__)

FIRST_STAGE_PARTS = ("query_encoding", "first_stage")


@dataclass
class System:
    """One evaluated configuration and what was measured about it."""

    name: str
    dataset: str
    retriever: str
    reranker: str
    depth: int | None
    folder: Path
    per_query: pd.DataFrame  # index query_id, columns measure
    p50_ms: float | None = None
    p95_ms: float | None = None
    qps: float | None = None
    pairs_per_second: float | None = None
    recall_at_depth: float | None = None
    quality_meaningful: bool = True
    hardware: str = ""
    first_stage_name: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def reranked(self) -> bool:
        return self.depth is not None


def find_runs(results_dir: Path) -> list[Path]:
    """Every complete run folder below ``results_dir`` (incomplete ones are skipped)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(problem(f"results folder does not exist: {results_dir}"))
    folders = sorted(p.parent for p in results_dir.rglob(COMPLETE))
    incomplete = sorted(
        p.parent for p in results_dir.rglob("metrics.json") if p.parent not in set(folders)
    )
    for folder in incomplete:
        log.warning("skipping incomplete run %s (no %s)", folder, COMPLETE)
    if not folders:
        raise DataError(
            problem(
                f"no finished runs below {results_dir}",
                fix="run evalkit-run (or a sweep with -m) into this folder first",
            )
        )
    return folders


def _hardware(env: dict) -> str:
    hw = env.get("hardware", {})
    return hw.get("gpu") or f"{hw.get('cpu', '?')} x{hw.get('cpu_count', '?')}"


def _latency(online: dict | None, parts: tuple[str, ...] | None) -> tuple:
    """(p50, p95, qps) of the whole system (parts=None) or of the given stages summed."""
    if not online:
        return None, None, None
    if parts is None:
        total = online.get("total") or {}
        return total.get("p50_ms"), total.get("p95_ms"), total.get("qps")
    per_query = online.get("per_query_ms") or {}
    present = [per_query[p] for p in parts if p in per_query]
    if not present:
        return None, None, None
    summed = np.sum(np.asarray(present, dtype=np.float64), axis=0)
    stats = summarize(summed.tolist())
    concurrency = (online.get("conditions") or {}).get("concurrency", 1)
    qps = concurrency * len(summed) / (summed.sum() / 1000) if summed.sum() else None
    return stats["p50_ms"], stats["p95_ms"], qps


def _stage_table(per_query: pd.DataFrame, stage: str, metrics: dict) -> pd.DataFrame:
    """One stage's per-query values as a query_id x measure table, in metrics.json order."""
    table = per_query[per_query.stage == stage].pivot(
        index="query_id", columns="measure", values="value"
    )
    return table[list(metrics[stage])]


def load_systems(results_dir: Path) -> list[System]:
    systems: dict[str, System] = {}
    for folder in find_runs(results_dir):
        config = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"))
        metrics = json.loads((folder / "metrics.json").read_text())
        latency = json.loads((folder / "latency.json").read_text())
        env = json.loads((folder / "env.json").read_text())
        per_query = pd.read_parquet(folder / "per_query.parquet")
        dataset = metrics.get("dataset") or config["dataset"]["name"]
        retriever = config["retriever"]["name"]
        first_name = f"{retriever}"
        online = latency.get("online")
        hardware = _hardware(env)
        key = f"{dataset}|{first_name}|{config['pipeline']['first_stage_k']}"
        if key not in systems:
            p50, p95, qps = _latency(online, FIRST_STAGE_PARTS)
            systems[key] = System(
                name=first_name,
                dataset=dataset,
                retriever=retriever,
                reranker="none",
                depth=None,
                folder=folder,
                per_query=_stage_table(per_query, "first_stage", metrics),
                p50_ms=p50,
                p95_ms=p95,
                qps=qps,
                pairs_per_second=None,
                hardware=hardware,
                quality_meaningful=config["retriever"].get("weights") != "random",
                extra={"search_qps": latency["offline"].get("search_queries_per_second")},
            )
        if "reranked" not in metrics:
            continue
        depth = int(config["pipeline"]["depth"])
        reranker = config["reranker"]["name"]
        name = f"{retriever} → {reranker}@{depth}"
        p50, p95, qps = _latency(online, None)
        systems[f"{dataset}|{name}"] = System(
            name=name,
            dataset=dataset,
            retriever=retriever,
            reranker=reranker,
            depth=depth,
            folder=folder,
            per_query=_stage_table(per_query, "reranked", metrics),
            p50_ms=p50,
            p95_ms=p95,
            qps=qps,
            pairs_per_second=latency["offline"].get("rerank_pairs_per_second"),
            recall_at_depth=metrics.get("recall_at_depth", {}).get("value"),
            quality_meaningful=bool(metrics.get("quality_meaningful", True)),
            hardware=hardware,
            first_stage_name=first_name,
            extra={"reranker_model": (env.get("models") or {}).get("reranker")},
        )
    _share_pairs_per_second(list(systems.values()))
    return list(systems.values())


def _share_pairs_per_second(systems: list[System]) -> None:
    """A run whose pairs all came from the cache measured no throughput; borrow the
    reranker's measured pairs/s on the same hardware and dataset from another run."""
    measured: dict[tuple, float] = {}
    for s in systems:
        if s.reranked and s.pairs_per_second:
            key = (s.dataset, s.extra.get("reranker_model"), s.hardware)
            measured[key] = max(measured.get(key, 0.0), s.pairs_per_second)
    for s in systems:
        if s.reranked and not s.pairs_per_second:
            s.pairs_per_second = measured.get(
                (s.dataset, s.extra.get("reranker_model"), s.hardware)
            )


@dataclass
class Report:
    """The tidy table (one row per system and measure) and the systems behind it."""

    table: pd.DataFrame
    systems: list[System]
    metric: str

    def headline(self) -> pd.DataFrame:
        """One row per system for the headline measure, best first."""
        rows = self.table[self.table.measure == self.metric]
        columns = [
            "dataset",
            "system",
            "mean",
            "ci_low",
            "ci_high",
            "baseline",
            "gain",
            "p_ttest_holm",
            "p_randomization_holm",
            "wins",
            "ties",
            "losses",
            "recall_at_depth",
            "p50_ms",
            "p95_ms",
            "qps",
        ]
        return rows[columns].sort_values(["dataset", "mean"], ascending=[True, False])

    def means(self) -> pd.DataFrame:
        return self.table.pivot_table(
            index=["dataset", "system"], columns="measure", values="mean", sort=False
        )

    def to_markdown(self) -> str:
        return _markdown(self.headline())


COUNT_COLUMNS = ("wins", "ties", "losses", "depth")


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value, column) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "—"
        if column in COUNT_COLUMNS:
            return str(int(value))
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(cell(v, c) for v, c in zip(row, frame.columns, strict=True)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def compare(
    systems: list[System], metric: str, baseline: str = "auto", bootstrap: int = 2000
) -> Report:
    """Build the tidy comparison table."""
    by_name = {(s.dataset, s.name): s for s in systems}
    rows = []
    for system in systems:
        if baseline == "auto":
            base = (
                by_name.get((system.dataset, system.first_stage_name)) if system.reranked else None
            )
        else:
            base = by_name.get((system.dataset, baseline))
            if base is None:
                names = sorted({s.name for s in systems})
                raise DataError(
                    problem(
                        f"baseline '{baseline}' is not among the systems",
                        fix=f"choose one of {names}",
                    )
                )
            base = None if base is system else base
        for measure in system.per_query.columns:
            values = system.per_query[measure]
            low, high = bootstrap_ci(values.to_numpy(), samples=bootstrap)
            row = {
                "dataset": system.dataset,
                "system": system.name,
                "retriever": system.retriever,
                "reranker": system.reranker,
                "depth": system.depth,
                "measure": measure,
                "mean": float(values.mean()),
                "ci_low": low,
                "ci_high": high,
                "baseline": base.name if base is not None else None,
                "recall_at_depth": system.recall_at_depth,
                "p50_ms": system.p50_ms,
                "p95_ms": system.p95_ms,
                "qps": system.qps,
                "pairs_per_second": system.pairs_per_second,
                "hardware": system.hardware,
                "quality_meaningful": system.quality_meaningful,
                "folder": str(system.folder),
            }
            if base is not None and measure in base.per_query.columns:
                common = values.index.intersection(base.per_query.index)
                result = compare_paired(
                    base.per_query.loc[common, measure].to_numpy(),
                    values.loc[common].to_numpy(),
                    samples=bootstrap,
                )
                row.update(
                    gain=result.gain,
                    gain_ci_low=result.gain_ci_low,
                    gain_ci_high=result.gain_ci_high,
                    p_ttest=result.p_ttest,
                    p_randomization=result.p_randomization,
                    wins=result.wins,
                    ties=result.ties,
                    losses=result.losses,
                )
            rows.append(row)
    table = pd.DataFrame(rows)
    for column in (
        "gain",
        "gain_ci_low",
        "gain_ci_high",
        "p_ttest",
        "p_randomization",
        "wins",
        "ties",
        "losses",
    ):
        if column not in table:
            table[column] = np.nan
    for test in ("p_ttest", "p_randomization"):
        table[f"{test}_holm"] = np.nan
        for _, group in table.groupby("measure"):
            tested = group[test].dropna()
            if len(tested):
                table.loc[tested.index, f"{test}_holm"] = holm(tested.tolist())
    return Report(table=table, systems=systems, metric=metric)


def build_report(
    results_dir: Path,
    out_dir: Path | None = None,
    baseline: str = "auto",
    metric: str = "nDCG@10",
    bootstrap: int = 2000,
) -> Path:
    """Write ``report.md``, ``report.html``, ``report.csv``/``.parquet`` and plots."""
    from evalkit.plots import write_plots

    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir else results_dir / "report"
    systems = load_systems(results_dir)
    if not any(metric in s.per_query.columns for s in systems):
        raise DataError(
            problem(
                f"measure '{metric}' was not computed by these runs",
                fix=f"pass --metric with one of {sorted(systems[0].per_query.columns)}",
            )
        )
    report = compare(systems, metric, baseline, bootstrap)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "report.parquet", report.table)
    write_text(out / "report.csv", report.table.to_csv(index=False))
    figures = write_plots(report, out)
    hardware = sorted({s.hardware for s in systems})
    notes = []
    if len(hardware) > 1:
        notes.append(
            f"**Warning:** runs were measured on different hardware: {hardware}; "
            "latencies are not comparable across them."
        )
    if not all(s.quality_meaningful for s in systems):
        notes.append(
            "Systems with random (cost-only) weights: their quality is a plumbing "
            "check, not a measurement."
        )
    means = report.means().reset_index()
    sections = [
        f"# evalkit report: {results_dir}",
        "",
        f"{len(systems)} systems; headline measure **{metric}**; 95% CIs by paired bootstrap "
        f"over queries ({bootstrap} samples); gain vs baseline (default: the same first stage "
        "without reranking) with paired t-test and randomisation test, Holm-corrected per "
        "measure across the sweep. Latency: online p50/p95 of the whole system (ms).",
        "",
        *notes,
        "",
        "## Headline",
        "",
        report.to_markdown(),
        "",
        "## All measures (means)",
        "",
        _markdown(means),
        "",
        "## Plots",
        "",
    ]
    sections += [f"![{name}]({name}.png)" for name in figures]
    write_text(out / "report.md", "\n".join(sections) + "\n")
    write_text(out / "report.html", _html(results_dir, report, means, figures, out, notes, metric))
    return out


def _html(results_dir, report: Report, means, figures, out: Path, notes, metric) -> str:
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode((out / f"{name}.png").read_bytes()).decode()}"/>'
        f"<figcaption>{name}</figcaption></figure>"
        for name in figures
    )
    notes_html = "".join(f"<p><b>{n}</b></p>" for n in notes)
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}img{max-width:560px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>evalkit report</title>"
        f"<style>{style}</style></head><body><h1>evalkit report: {results_dir}</h1>"
        f"{notes_html}<h2>Headline ({metric})</h2>"
        f"{report.headline().to_html(index=False, float_format=lambda v: f'{v:.4f}')}"
        f"<h2>All measures (means)</h2>"
        f"{means.to_html(index=False, float_format=lambda v: f'{v:.4f}')}"
        f"<h2>Plots</h2>{images}</body></html>\n"
    )
