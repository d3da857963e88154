"""Rendering a :class:`~evalkit.analysis.report.Report`: one number format, Markdown and
HTML tables, and the report folder (``report.md``, ``report.html``, CSV / Parquet, plots)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evalkit.analysis.formats import format_cell
from evalkit.io import files_moved_into, write_parquet, write_text

if TYPE_CHECKING:
    from evalkit.analysis.report import Report


def _md_to_html(text: str) -> str:
    """The little Markdown the report writes: paragraphs, **bold**, `code`."""
    escaped = html.escape(text).replace("\n\n", "</p><p>")
    parts = escaped.split("**")
    escaped = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_table(frame: pd.DataFrame, kind: str) -> str:
    """A frame as a Markdown or HTML table, every cell through :func:`format_cell`."""
    columns = [str(c) for c in frame.columns]
    rows = [list(row) for row in frame.itertuples(index=False)]
    best = set(frame.attrs.get("best") or ())  # (row position, column): the column's best

    def cell(position, column, value) -> str:
        text = format_cell(column, value)
        if (position, column) not in best:
            return html.escape(text) if kind == "html" else text
        return f"<b>{html.escape(text)}</b>" if kind == "html" else f"**{text}**"

    cells = [
        [cell(i, c, v) for c, v in zip(columns, row, strict=True)] for i, row in enumerate(rows)
    ]
    if kind == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in cells)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def save_report(self: Report, out: str | Path, title: str = "evalkit report") -> Path:
    """Write ``report.md``, ``report.html``, ``queries.html`` (every query), ``report.csv``
    / ``.parquet``, ``latency.csv`` and the plots (SVG in the page, PNG for papers), all or
    none: written beside ``out`` and moved in when complete."""
    with files_moved_into(Path(out)) as scratch:
        _write_report(self, scratch, title)
    return Path(out)


def _write_report(self: Report, out: Path, title: str) -> None:
    from evalkit.analysis.plots import write_plots
    from evalkit.analysis.queries import write_query_view

    write_parquet(out / "report.parquet", self.table)
    write_text(out / "report.csv", self.table.to_csv(index=False))
    write_text(out / "latency.csv", self.latency_table().to_csv(index=False))
    selective = self.selective()
    if len(selective):
        write_text(out / "selective.csv", selective.to_csv(index=False))
    figures = write_plots(self, out)
    queries = write_query_view(self.systems, self.labels, self.metric_for, out)
    sections = _sections(self, queries is not None)
    markdown = [f"# {title}", ""]
    for heading, text, frame in sections:
        markdown += [f"## {heading}", "", text, ""]
        if frame is not None:
            markdown += [render_table(frame, "markdown"), ""]
        if heading == "Headline":
            markdown += [
                *[f"![{f.alt}]({f.name}.png)\n\n*{f.caption}*\n" for f in figures],
            ]
    write_text(out / "report.md", "\n".join(markdown))
    write_text(out / "report.html", _html(title, sections, figures, out))


def _sections(self: Report, has_queries: bool) -> list[tuple[str, str, pd.DataFrame | None]]:
    from evalkit.analysis.headline import compact_headline, verdict_lines

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
    method = (
        f"{len(self.systems)} systems; headline measure **{self.metric}**; 95% CIs by "
        f"bootstrap over queries ({self.bootstrap} samples); gain vs the same first stage "
        "without reranking (matched by identity), paired t-test and randomisation test, "
        "Holm-corrected per measure across the sweep. Latency: online p95 per query (ms) "
        "with its distribution-free 95% CI and the number of timed queries, each system "
        "from its own measurement. Result folders: report.csv and latency.csv."
    )
    verdict = []
    if self.verdict:
        source = self.verdict.get("source", "")
        lines = [line for line in verdict_lines(self.verdict) if line]
        text = "\n\n".join(lines) + (f"\n\n({source})" if source else "")
        verdict = [("Verdict", text, None)]
    queries = (
        " Every query, with its documents before and after reranking: `queries.html`."
        if has_queries
        else ""
    )
    all_columns = self.shown_headline()
    latency = self.latency_table().drop(columns=["folder"])
    return [
        *verdict,
        (
            "Headline",
            f"{self.metric} per system, best first; the best of each column in bold.{queries}",
            compact_headline(self),
        ),
        ("Latency", "Every system, cost-only ones included.", latency),
        ("All columns", "The headline with every column.", all_columns),
        ("All measures (means)", "Measures in natural order.", self.means()),
        *_selective_section(self),
        *(
            [("All pairs", "Every pair on the same queries, Holm across all pairs.", self.pairs)]
            if self.pairs is not None and len(self.pairs)
            else []
        ),
        ("Method", "\n\n".join([method, *(f"**Note:** {n}" for n in notes)]), None),
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


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:0 12px}"
    ".scroll{overflow-x:auto;max-width:100%}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
    "padding:3px 6px;text-align:right;white-space:nowrap}td:first-child,th:first-child"
    "{text-align:left;white-space:normal}"
    "figure{margin:16px 0}figure img{width:100%;height:auto}figcaption{font-size:14px}"
    "#verdict{border-left:6px solid #2a6;background:#f2faf5;padding:8px 14px;font-size:16px}"
)


def _html(title, sections, figures, out: Path) -> str:
    images = "".join(
        f'<figure><img alt="{html.escape(f.alt)}" src="data:image/svg+xml;base64,'
        f'{base64.b64encode((out / f"{f.name}.svg").read_bytes()).decode()}"/>'
        f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for f in figures
    )
    body = ""
    for heading, text, frame in sections:
        paragraph = _md_to_html(text).replace(
            "<code>queries.html</code>", '<a href="queries.html">queries.html</a>'
        )
        block = f"<h2>{html.escape(heading)}</h2><p>{paragraph}</p>"
        if heading == "Verdict":
            block = f'<section id="verdict">{block}</section>'
        block += render_table(frame, "html") if frame is not None else ""
        if heading == "Headline":
            block += images
        body += block
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>\n"
    )
