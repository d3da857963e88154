"""The answer first: the verdict, the short headline table, and the LaTeX table.

* :func:`verdict_lines` -> the decision (from ``decision.json`` or a budget given to
  ``evalkit-report``) as the report's first lines: verdict, chosen system, its gain with CI
  and p-value, its p95 with CI and n, and which axes rest on evidence.
* :func:`compact_headline` -> about 8 columns (system, measure with CI, gain with CI, p,
  p95 with CI and n, QPS, $/1k where priced), the best value per column marked
  in ``frame.attrs["best"]`` (bold in Markdown and HTML).
* :func:`to_latex` -> a booktabs table, best bold, significance marked (like ranx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from evalkit.analysis.formats import format_cell
from evalkit.results import is_number

if TYPE_CHECKING:
    from evalkit.analysis.report import Report


def _with_ci(value, low, high, column: str = "mean") -> str:
    """``value [low, high]``; a bound the sample cannot give shows as ``—`` (a p95 from
    too few queries has no upper bound), never dropped."""
    if not is_number(value):
        return "—"
    text = format_cell(column, value)
    if is_number(low) or is_number(high):
        text += f" [{format_cell(column, low)}, {format_cell(column, high)}]"
    return text


def _p95(row) -> str:
    if not is_number(row.p95_ms):
        return "—"
    text = _with_ci(row.p95_ms, row.p95_ci_low_ms, row.p95_ci_high_ms, "p95_ms")
    if is_number(row.latency_queries) and row.latency_queries:
        text += f", n={int(row.latency_queries)}"
    return text


def compact_headline(report: Report) -> pd.DataFrame:
    """The headline a person reads: one row per system, best first."""
    rows = report.headline()
    metric = report.metric
    priced = rows["usd_per_1k_queries"].notna().any()
    table = pd.DataFrame(
        {
            "dataset": rows.dataset,
            "system": rows.system,
            f"{metric} [95% CI]": [
                _with_ci(r.mean, r.ci_low, r.ci_high) for r in rows.itertuples()
            ],
            "gain [95% CI]": [
                _with_ci(r.gain, r.gain_ci_low, r.gain_ci_high, "gain") for r in rows.itertuples()
            ],
            "p (Holm)": [format_cell("p_randomization_holm", v) for v in rows.p_randomization_holm],
            "p95 ms [95% CI]": [_p95(r) for r in rows.itertuples()],
            "QPS": [format_cell("qps", v) for v in rows.qps],
            **(
                {
                    "$/1k queries": [
                        format_cell("usd_per_1k_queries", v) for v in rows.usd_per_1k_queries
                    ]
                }
                if priced
                else {}
            ),
        }
    ).reset_index(drop=True)
    best = {
        f"{metric} [95% CI]": ("mean", max),
        "gain [95% CI]": ("gain", max),
        "p95 ms [95% CI]": ("p95_ms", min),
        "QPS": ("qps", max),
        "$/1k queries": ("usd_per_1k_queries", min),
    }
    rows = rows.reset_index(drop=True)
    marked: list[tuple[int, str]] = []
    for dataset in rows.dataset.unique():
        here = rows.index[rows.dataset == dataset]
        for column, (source, pick) in best.items():
            if column not in table:
                continue
            values = rows.loc[here, source]
            values = values[[is_number(v) for v in values]]
            if len(values) < 2:
                continue
            target = pick(values)
            marked += [(int(i), column) for i in values.index[values == target]]
    if rows.dataset.nunique() == 1:
        table = table.drop(columns=["dataset"])
    if not rows.p95_ms.map(is_number).any():  # run files compared: nothing was timed
        table = table.drop(columns=["p95 ms [95% CI]", "QPS"])
    table.attrs["best"] = marked  # (row position, column): rendered bold
    return table


def verdict_lines(verdict: dict) -> list[str]:
    """The decision as the report's first lines (Markdown)."""
    budget = verdict.get("budget") or {}
    asked = [f"p95 ≤ {format_cell('p95_ms', budget.get('p95_ms'))} ms"]
    if is_number(budget.get("qps")):
        asked.append(f"at {format_cell('qps', budget['qps'])} QPS")
    if is_number(budget.get("max_usd_per_1k")):
        asked.append(f"≤ ${budget['max_usd_per_1k']:,.4g} per 1k queries")
    lines = [f"**{verdict.get('message', '')}**", "", f"Budget: {', '.join(asked)}."]
    rec = verdict.get("recommendation")
    if rec:
        gain = ""
        if is_number(rec.get("gain")):
            interval = _with_ci(
                rec["gain"], rec.get("gain_ci_low"), rec.get("gain_ci_high"), "gain"
            )
            p = format_cell("p_ttest", rec.get("p_randomization_holm"))
            gain = f"; gain {interval} over {rec.get('baseline')}, p = {p} (Holm)"
        p95 = ""
        if is_number(rec.get("p95_ms")):
            interval = _with_ci(
                rec["p95_ms"], rec.get("p95_ci_low_ms"), rec.get("p95_ci_high_ms"), "p95_ms"
            )
            n = rec.get("latency_queries")
            p95 = f"; p95 {interval} ms" + (f" from {n} timed queries" if n else "")
        lines += [
            "",
            f"Chosen: **{rec.get('system')}** — {rec.get('measure')} "
            f"{_with_ci(rec.get('mean'), rec.get('ci_low'), rec.get('ci_high'))}{gain}{p95}.",
        ]
    axes = verdict.get("axes") or {}
    if axes:
        said = "; ".join(f"{k} — {str(v).removeprefix('evidence: ')}" for k, v in axes.items())
        lines += ["", f"What each axis rests on: {said}."]
    if verdict.get("undetermined"):
        lines += ["", "Latency undetermined for: " + ", ".join(verdict["undetermined"]) + "."]
    return lines


def to_latex(report: Report, caption: str | None = None, label: str = "tab:evalkit") -> str:
    """A booktabs table of the headline: measure with CI, gain, p95; best bold, and
    ``$^{\\dagger}$`` on gains significant at 0.05 after Holm (like ranx's ``to_latex``)."""
    rows = report.headline()
    metric = report.metric

    def cell(value, column, bold=False, mark=False):
        text = format_cell(column, value).replace("—", "--").replace("$", r"\$")
        text = rf"\textbf{{{text}}}" if bold else text
        return text + (r"$^{\dagger}$" if mark else "")

    default_caption = metric + r" per system; $^{\dagger}$: gain significant (Holm, 0.05)."
    best_mean = rows["mean"].max()
    timed = rows.p95_ms[[is_number(v) for v in rows.p95_ms]]
    best_p95 = timed.min() if len(timed) else None
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + (caption or default_caption) + "}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "r" * (4 if len(timed) else 3) + "}",
        r"\toprule",
        rf"System & {metric} & Gain & p (Holm){' & p95 (ms)' if len(timed) else ''} \\",
        r"\midrule",
    ]
    for r in rows.itertuples():
        significant = is_number(r.p_randomization_holm) and r.p_randomization_holm < 0.05
        name = (
            str(r.system)
            .replace("_", r"\_")
            .replace("&", r"\&")
            .replace("%", r"\%")
            .replace("→", r"$\to$")
        )
        lines.append(
            " & ".join(
                [
                    name,
                    cell(r.mean, "mean", bold=r.mean == best_mean),
                    cell(r.gain, "gain", mark=significant),
                    cell(r.p_randomization_holm, "p_ttest"),
                    cell(r.p95_ms, "p95_ms", bold=best_p95 is not None and r.p95_ms == best_p95),
                ][: 5 if len(timed) else 4]
            )
            + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
