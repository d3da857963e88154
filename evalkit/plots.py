"""Report figures (matplotlib, PNG + SVG): quality vs latency with the Pareto frontier,
quality vs depth, latency vs depth, and the per-query difference histogram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from evalkit.report import Report


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report.metric
    rows = report.table[report.table.measure == metric]
    names: list[str] = []

    timed = rows.dropna(subset=["p95_ms"])
    if len(timed):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for dataset, group in timed.groupby("dataset"):
            axes.scatter(group.p95_ms, group["mean"], label=dataset)
            for _, row in group.iterrows():
                axes.annotate(
                    row.system,
                    (row.p95_ms, row["mean"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
            front = group.iloc[pareto_frontier(group.p95_ms.tolist(), group["mean"].tolist())]
            axes.plot(front.p95_ms, front["mean"], "--", color="grey", linewidth=1)
        axes.set_xscale("log")
        axes.margins(x=0.25)  # room for the labels of the outermost points
        axes.set_xlabel("p95 latency per query (ms, log)")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric} vs p95 latency (dashed: Pareto frontier)")
        axes.legend(fontsize=8)
        names.append(_save(figure, out, "quality_vs_latency"))

    reranked = rows.dropna(subset=["depth"])
    if reranked.depth.nunique() > 1:
        for column, label, name in (
            ("mean", metric, "quality_vs_depth"),
            ("p95_ms", "p95 latency (ms)", "latency_vs_depth"),
        ):
            figure, axes = plt.subplots(figsize=(6, 4))
            for (dataset, retriever, reranker), group in reranked.groupby(
                ["dataset", "retriever", "reranker"]
            ):
                group = group.sort_values("depth")
                axes.plot(
                    group.depth,
                    group[column],
                    marker="o",
                    label=f"{dataset}: {retriever} → {reranker}",
                )
            axes.set_xscale("log")
            depths = sorted(reranked.depth.unique())
            axes.set_xticks(depths, [str(int(d)) for d in depths])
            axes.minorticks_off()
            axes.set_xlabel("depth (candidates reranked)")
            axes.set_ylabel(label)
            axes.legend(fontsize=7)
            names.append(_save(figure, out, name))

    compared = rows.dropna(subset=["gain"])
    if len(compared):
        best = compared.sort_values("mean", ascending=False).iloc[0]
        system = next(
            s for s in report.systems if s.name == best.system and s.dataset == best.dataset
        )
        base = next(
            s for s in report.systems if s.name == best.baseline and s.dataset == best.dataset
        )
        common = system.per_query.index.intersection(base.per_query.index)
        diff = system.per_query.loc[common, metric] - base.per_query.loc[common, metric]
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.hist(diff.to_numpy(), bins=np.linspace(-1, 1, 41))
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_xlabel(f"per-query {metric}: {best.system} − {best.baseline}")
        axes.set_ylabel("queries")
        names.append(_save(figure, out, "per_query_difference"))
    return names


def write_depth_curve(curve: list[dict], out: Path) -> None:
    """Latency-vs-depth table (CSV) and plot for one run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from evalkit.io import write_text

    rows = [
        {"depth": point["depth"], "stage": stage, **{k: v for k, v in stats.items() if k != "qps"}}
        for point in curve
        for stage, stats in point["stages"].items()
    ]
    table = pd.DataFrame(rows)
    write_text(out / "latency_vs_depth.csv", table.to_csv(index=False))
    figure, axes = plt.subplots(figsize=(6, 4))
    for stage, group in table.groupby("stage"):
        for percentile, style in (("p50_ms", "-"), ("p95_ms", "--")):
            axes.plot(
                group.depth, group[percentile], style, marker="o", label=f"{stage} {percentile[:3]}"
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("depth (candidates reranked)")
    axes.set_ylabel("latency per query (ms)")
    axes.legend(fontsize=7)
    _save(figure, out, "latency_vs_depth")
