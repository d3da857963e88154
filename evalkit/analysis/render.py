"""Rendering a :class:`~evalkit.analysis.report.Report`: one number format, Markdown and
HTML tables, and the report folder (``report.md``, ``report.html``, CSV / Parquet, plots)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from evalkit.io import write_parquet, write_text

if TYPE_CHECKING:
    from evalkit.analysis.report import Report


COUNT_COLUMNS = ("wins", "ties", "losses", "depth", "queries", "latency_queries")

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

SHARE_COLUMNS = ("share_reranked", "target_share", "rerank_not_model_share")

MONEY_COLUMNS = ("usd_per_1k_queries",)


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
    if column in RATE_COLUMNS and abs(float(value)) < 10:
        return f"{float(value):.3g}"  # 0.047 QPS is not 0.0
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


def save_report(self: Report, out: str | Path, title: str = "evalkit report") -> Path:
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
    sections = _sections(self, title)
    markdown = [f"# {title}", ""]
    for heading, text, frame in sections:
        markdown += [f"## {heading}", "", text, ""]
        if frame is not None:
            markdown += [render_table(frame, "markdown"), ""]
    markdown += ["## Plots", "", *[f"![{n}]({n}.png)" for n in figures], ""]
    write_text(out / "report.md", "\n".join(markdown))
    write_text(out / "report.html", _html(title, sections, figures, out))
    return out


def _sections(self: Report, title: str) -> list[tuple[str, str, pd.DataFrame | None]]:
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
            self.shown_headline(),
        ),
        ("Latency", "Every system, cost-only ones included.", self.latency_table()),
        ("All measures (means)", "Measures in natural order.", self.means()),
        *_selective_section(self),
    ]


def _selective_section(self: Report) -> list[tuple[str, str, pd.DataFrame | None]]:
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


def _html(title, sections, figures, out: Path) -> str:
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
