"""Report figures (matplotlib, PNG + SVG): quality vs latency with the Pareto frontier,
quality vs depth, latency vs depth, and the per-query difference histogram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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


def _save(figure, out: Path, name: str) -> str:
    figure.tight_layout()
    figure.savefig(out / f"{name}.png", dpi=110)
    figure.savefig(out / f"{name}.svg")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return name


def write_plots(report: Report, out: Path) -> list[str]:
    """The report's figures (PNG + SVG); returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    rows = report.headline()
    names = [
        name
        for name in (
            _quality_vs_latency(rows, report.metric, out),
            *_versus_depth(rows, report.metric, out),
            _per_query_difference(report, rows, out),
            *_selective(report, out),
        )
        if name
    ]
    return names


def _quality_vs_latency(rows, metric: str, out: Path) -> str | None:
    """Quality against p95 latency. Points are numbered and the numbers listed beside the
    axes, so long system labels never overlap each other."""
    import matplotlib.pyplot as plt

    timed = rows.dropna(subset=["p95_ms"]).reset_index(drop=True)
    if not len(timed):
        return None
    figure, (axes, legend) = plt.subplots(
        1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [3, 2]}
    )
    lines = []
    for dataset, group in timed.groupby("dataset"):
        axes.scatter(group.p95_ms, group["mean"], label=dataset)
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
    axes.set_xscale("log")
    axes.margins(x=0.15, y=0.1)
    axes.set_xlabel("p95 latency per query (ms, log)")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} vs p95 latency (dashed: Pareto frontier)", fontsize=10)
    axes.legend(fontsize=8)
    legend.axis("off")
    legend.text(0, 1, "\n".join(lines), va="top", fontsize=7, family="monospace", wrap=True)
    return _save(figure, out, "quality_vs_latency")


def _versus_depth(rows, metric: str, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    reranked = rows.dropna(subset=["depth"])
    if reranked.depth.nunique() < 2:
        return []
    names = []
    for column, label, name in (
        ("mean", metric, "quality_vs_depth"),
        ("p95_ms", "p95 latency (ms)", "latency_vs_depth"),
    ):
        figure, axes = plt.subplots(figsize=(6.5, 4))
        curves = reranked.assign(curve=reranked.system.str.replace(r"@\d+", "", regex=True))
        for (dataset, curve), group in curves.groupby(["dataset", "curve"]):
            group = group.sort_values("depth")
            axes.plot(group.depth, group[column], marker="o", label=f"{dataset}: {curve}")
        axes.set_xscale("log")
        depths = sorted(int(d) for d in reranked.depth.unique())
        axes.set_xticks(depths, [str(d) for d in depths])
        axes.minorticks_off()
        axes.set_xlabel("depth (candidates reranked)")
        axes.set_ylabel(label)
        axes.legend(fontsize=7)
        names.append(_save(figure, out, name))
    return names


def _per_query_difference(report: Report, rows, out: Path) -> str | None:
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
    return _save(figure, out, "per_query_difference")


def _selective(report: Report, out: Path) -> list[str]:
    """One plot per dataset: quality against pairs scored per query for every policy of
    every reranked system, with never / always at each depth, random and the oracle."""
    import matplotlib.pyplot as plt

    table = report.selective()
    if not len(table):
        return []
    names = []
    for index, (dataset, group) in enumerate(table.groupby("dataset")):
        figure, axes = plt.subplots(figsize=(8, 5))
        best_system = group.groupby("system")["mean"].max().idxmax()
        chosen = group[group.system == best_system]
        for policy, points in chosen.groupby("policy"):
            if policy in ("never", "always"):
                continue
            points = points.sort_values("pairs_per_query")
            style = {"oracle": "k--", "random": "k:"}.get(policy, "-")
            axes.plot(points.pairs_per_query, points["mean"], style, label=policy, linewidth=1)
        ends = group[group.policy.isin(["never", "always"])]
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
        axes.legend(fontsize=6, ncol=2)
        names.append(_save(figure, out, f"selective_{index}"))
    return names
