"""Report figures (matplotlib, PNG + SVG): quality vs latency with the Pareto frontier,
quality vs depth, latency vs depth, and the per-query difference histogram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from evalkit.results import is_number

if TYPE_CHECKING:
    from evalkit.analysis.report import Report


def pareto_frontier(latency: Sequence[float], quality: Sequence[float]) -> list[int]:
    """Indices of points no other point beats (lower or equal latency and higher or equal
    quality, strictly better in one), sorted by latency.

    Example:
        >>> pareto_frontier([10, 20, 30, 15], [0.3, 0.5, 0.4, 0.2])
        [0, 1]
    """
    points = list(zip(latency, quality, strict=True))
    frontier = []
    for i, (lat, qual) in enumerate(points):
        dominated = any(
            (lo <= lat and qo >= qual) and (lo < lat or qo > qual)
            for j, (lo, qo) in enumerate(points)
            if j != i
        )
        if not dominated:
            frontier.append(i)
    return sorted(frontier, key=lambda i: (points[i][0], -points[i][1]))


class Figure(NamedTuple):
    name: str  # file stem: <name>.png and <name>.svg
    caption: str
    alt: str


def _save(figure, out: Path, name: str, caption: str, alt: str) -> Figure:
    figure.tight_layout()
    figure.savefig(out / f"{name}.png", dpi=110)
    figure.savefig(out / f"{name}.svg")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return Figure(name, caption, alt)


def _errors(center, low, high) -> np.ndarray:
    """Asymmetric error bars (2 x n) from CI bounds; a missing bound draws no bar."""
    center = np.asarray(center, dtype=float)
    low = np.array([v if is_number(v) else np.nan for v in low], dtype=float)
    high = np.array([v if is_number(v) else np.nan for v in high], dtype=float)
    return np.nan_to_num(np.vstack([center - low, high - center]), nan=0.0).clip(min=0)


def write_plots(report: Report, out: Path) -> list[Figure]:
    """The report's figures (PNG + SVG) with their captions and alt texts."""
    import matplotlib

    matplotlib.use("Agg")
    rows = report.headline()
    verdict = report.verdict or {}
    budget = (verdict.get("budget") or {}).get("p95_ms")
    chosen = (verdict.get("recommendation") or {}).get("system")
    return [
        figure
        for figure in (
            _quality_vs_latency(rows, report.metric, out, budget, chosen),
            *_versus_depth(rows, report.metric, out),
            _per_query_difference(report, rows, out),
            *_selective(report, out),
        )
        if figure
    ]


def _quality_vs_latency(rows, metric: str, out: Path, budget=None, chosen=None) -> Figure | None:
    """Quality against p95 latency, both with their 95% CIs, the budget line and the
    chosen system marked. Points are numbered and the numbers listed beside the axes, so
    long system labels never overlap each other. The quality axis starts at 0."""
    import matplotlib.pyplot as plt

    timed = rows.dropna(subset=["p95_ms"]).reset_index(drop=True)
    if not len(timed):
        return None
    figure, (axes, legend) = plt.subplots(
        1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [3, 2]}
    )
    lines = []
    for dataset, group in timed.groupby("dataset"):
        lines += _points(axes, dataset, group, chosen)
    if is_number(budget):
        axes.axvline(
            budget, color="#c33", linestyle=":", linewidth=1.5, label=f"budget p95 {budget:g} ms"
        )
    axes.set_xscale("log")
    axes.margins(x=0.15)
    top = float(np.nanmax(timed.ci_high.astype(float).fillna(timed["mean"]))) if len(timed) else 1
    axes.set_ylim(0, min(1.0, top * 1.15) if top > 0 else 1.0)
    axes.set_xlabel("p95 latency per query (ms, log), 95% CI")
    axes.set_ylabel(f"{metric}, 95% CI (axis from 0)")
    axes.set_title(f"{metric} vs p95 latency (dashed: Pareto frontier)", fontsize=10)
    axes.legend(fontsize=8)
    legend.axis("off")
    legend.text(0, 1, "\n".join(lines), va="top", fontsize=7, family="monospace", wrap=True)
    caption = (
        f"{metric} against p95 latency per query, each with its 95% CI; dashed: the Pareto "
        "frontier"
        + ("; dotted: the budget" if is_number(budget) else "")
        + ("; star: the chosen system." if chosen else ".")
    )
    alt = (
        f"Scatter plot of {metric} (axis 0 to {top * 1.15:.2f}) against p95 latency for "
        f"{len(timed)} systems"
    )
    return _save(figure, out, "quality_vs_latency", caption, alt)


def _points(axes, dataset: str, group, chosen: str | None) -> list[str]:
    """One dataset's systems: CIs on both axes, numbered, the chosen one starred, the
    Pareto frontier dashed; returns the numbered legend lines."""
    axes.errorbar(
        group.p95_ms,
        group["mean"],
        xerr=_errors(group.p95_ms, group.p95_ci_low_ms, group.p95_ci_high_ms),
        yerr=_errors(group["mean"], group.ci_low, group.ci_high),
        fmt="o",
        capsize=3,
        label=dataset,
    )
    picked = group[group.system == chosen]
    if len(picked):
        axes.scatter(
            picked.p95_ms,
            picked["mean"],
            s=260,
            marker="*",
            color="#d62",
            zorder=4,
            label=f"chosen: {chosen}",
        )
    lines = []
    for index, row in group.iterrows():
        number = index + 1
        axes.annotate(
            str(number),
            (row.p95_ms, row["mean"]),
            fontsize=8,
            xytext=(4, 2),
            textcoords="offset points",
        )
        lines.append(f"{number}. {row.system} ({dataset})")
    front = group.iloc[pareto_frontier(group.p95_ms.tolist(), group["mean"].tolist())]
    axes.plot(front.p95_ms, front["mean"], "--", color="grey", linewidth=1)
    return lines


def _versus_depth(rows, metric: str, out: Path) -> list[Figure]:
    """Quality and p95 latency against depth, each point with its 95% CI."""
    import matplotlib.pyplot as plt

    reranked = rows.dropna(subset=["depth"])
    if reranked.depth.nunique() < 2:
        return []
    figures = []
    for column, low, high, label, name in (
        ("mean", "ci_low", "ci_high", metric, "quality_vs_depth"),
        ("p95_ms", "p95_ci_low_ms", "p95_ci_high_ms", "p95 latency (ms)", "latency_vs_depth"),
    ):
        figure, axes = plt.subplots(figsize=(6.5, 4))
        curves = reranked.assign(curve=reranked.system.str.replace(r"@\d+", "", regex=True))
        for (dataset, curve), group in curves.groupby(["dataset", "curve"]):
            group = group.sort_values("depth").dropna(subset=[column])
            if not len(group):
                continue
            axes.errorbar(
                group.depth,
                group[column],
                yerr=_errors(group[column], group[low], group[high]),
                marker="o",
                capsize=3,
                label=f"{dataset}: {curve}",
            )
        axes.set_xscale("log")
        depths = sorted(int(d) for d in reranked.depth.unique())
        axes.set_xticks(depths, [str(d) for d in depths])
        axes.minorticks_off()
        axes.set_ylim(bottom=0)
        axes.set_xlabel("depth (candidates reranked)")
        axes.set_ylabel(f"{label}, 95% CI")
        axes.legend(fontsize=7)
        what = metric if column == "mean" else "p95 latency per query"
        figures.append(
            _save(
                figure,
                out,
                name,
                f"{what} against reranking depth, with 95% CIs (axis from 0).",
                f"Line plot of {what} against depth {depths} for each reranker",
            )
        )
    return figures


def _per_query_difference(report: Report, rows, out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    compared = rows.dropna(subset=["gain"])
    if not len(compared):
        return None
    best = compared.sort_values("mean", ascending=False).iloc[0]
    by_label = {(s.dataset, report.labels[s.key]): s for s in report.systems}
    system = by_label[(best.dataset, best.system)]
    base = by_label[(best.dataset, best.baseline)]
    measure = best.measure
    common = system.per_query.index.intersection(base.per_query.index)
    diff = system.per_query.loc[common, measure] - base.per_query.loc[common, measure]
    figure, axes = plt.subplots(figsize=(6.5, 4))
    axes.hist(diff.to_numpy(), bins=np.linspace(-1, 1, 41))
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel(f"per-query {measure}: {best.system} − {best.baseline}", fontsize=8)
    axes.set_ylabel("queries")
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    return _save(
        figure,
        out,
        "per_query_difference",
        f"Per-query {measure} difference, {best.system} minus {best.baseline}: {wins} queries "
        f"gain, {losses} lose (open them in queries.html).",
        f"Histogram of per-query {measure} differences between {best.system} and {best.baseline}",
    )


MAIN_POLICIES = ("oracle", "random")


def _policies(axes, chosen, best_policy: str | None) -> None:
    """random and the oracle dotted/dashed, the best policy bold, the others faded."""
    for policy, points in chosen.groupby("policy"):
        if policy in ("never", "always"):
            continue
        points = points.sort_values("pairs_per_query")
        if policy in MAIN_POLICIES or policy == best_policy:
            style = {"oracle": "k--", "random": "k:"}.get(policy, "-")
            width = 1.0 if policy in MAIN_POLICIES else 2.0
            label = policy if policy in MAIN_POLICIES else f"best policy: {policy}"
            axes.plot(points.pairs_per_query, points["mean"], style, label=label, linewidth=width)
        else:
            axes.plot(
                points.pairs_per_query,
                points["mean"],
                "-",
                color="grey",
                alpha=0.25,
                linewidth=0.8,
            )


def _selective_system(report: Report, dataset: str, group) -> str:
    """The system the plot shows: the one the decision recommends (its selective choice,
    else its reranked recommendation) when it has a curve here; else the best reranker
    when always applied -- never the one with the highest oracle (a ceiling, not a choice)."""
    verdict = report.verdict or {}
    if verdict.get("dataset") == dataset:
        for pick in (verdict.get("selective") or {}, verdict.get("recommendation") or {}):
            if pick.get("system") in set(group.system):
                return str(pick["system"])
    always = group[group.policy == "always"]
    if len(always):
        return str(always.loc[always["mean"].idxmax(), "system"])
    return str(group.system.iloc[0])


def _selective(report: Report, out: Path) -> list[Figure]:
    """One plot per dataset: never / always, random, the oracle and the best policy of the
    best system in full; its other policies faded."""
    import matplotlib.pyplot as plt

    table = report.selective()
    if not len(table):
        return []
    figures = []
    for index, (dataset, group) in enumerate(table.groupby("dataset")):
        figure, axes = plt.subplots(figsize=(8, 5))
        best_system = _selective_system(report, dataset, group)
        chosen = group[group.system == best_system]
        candidates = chosen[~chosen.policy.isin(("never", "always", *MAIN_POLICIES))]
        best_policy = (
            candidates.groupby("policy")["mean"].max().idxmax() if len(candidates) else None
        )
        _policies(axes, chosen, best_policy)
        ends = group[group.policy.isin(["never", "always"]) & (group.system == best_system)]
        for row in ends.itertuples():
            marker = "s" if row.policy == "never" else "o"
            axes.scatter(row.pairs_per_query, row.mean, marker=marker, color="black", zorder=3)
            axes.annotate(
                f"{row.policy}@{int(row.depth)}" if row.policy == "always" else "never",
                (row.pairs_per_query, row.mean),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        axes.set_xlabel("reranker pairs scored per query (mean)")
        axes.set_ylabel(chosen.measure.iloc[0])
        axes.set_title(f"{dataset}: selective reranking, {best_system}", fontsize=9)
        axes.legend(fontsize=7)
        figures.append(
            _save(
                figure,
                out,
                f"selective_{index}",
                f"{dataset}: selective reranking with {best_system}: quality against pairs "
                "scored per query for never / always, random, the oracle ceiling and the best "
                "policy (other policies faded).",
                f"Line plot of selective reranking policies for {best_system} on {dataset}",
            )
        )
    return figures
