"""A run folder's own plots: latency vs depth and the load curve (renderings of its records).

Drawn by the API and the CLI after a run is saved (:func:`write_run_plots`); the result
records never draw.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.analysis.plots import _save
from evalkit.results import RunResult
from evalkit.results.run_records import DepthPoint, LoadCurve


def write_run_plots(result: RunResult) -> None:
    """Draw the plots a finished run folder shows beside its files."""
    if result.folder is None:
        return
    depth_curve = result.latency_record.depth_curve
    if depth_curve:
        write_depth_curve(depth_curve, result.folder)
    if result.load_record is not None:
        write_load_curve(result.load_record, result.folder)


def write_depth_curve(curve: tuple[DepthPoint, ...], out: Path) -> None:
    """Latency-vs-depth table (CSV) and plot for one run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from evalkit.io import write_text

    rows = [
        {
            "depth": point.depth,
            "stage": name,
            **{k: v for k, v in stage.to_dict().items() if k != "qps"},
        }
        for point in curve
        for name, stage in point.stages.items()
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
    _save(
        figure,
        out,
        "latency_vs_depth",
        "Latency per query against reranking depth, p50 and p95 per stage.",
        "Line plot of per-stage p50 and p95 latency against depth",
    )


def write_load_curve(load: LoadCurve, out: Path) -> None:
    """p95 latency against offered QPS: the measured open-loop points (one replica) and the
    simulated curves for 1, 2 and 4 replicas; saturated points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for replicas, curve in sorted(load.simulated.items()):
        axes.plot(
            [p.offered_qps for p in curve],
            [p.p95_ms for p in curve],
            "--",
            label=f"simulated, {replicas} replica{'s' if replicas > 1 else ''}",
        )
    calm = [p for p in load.points if not p.saturated]
    tired = [p for p in load.points if p.saturated]
    axes.plot([p.offered_qps for p in calm], [p.p95_ms for p in calm], "ko", label="measured")
    if tired:
        axes.plot(
            [p.offered_qps for p in tired],
            [p.p95_ms for p in tired],
            "rx",
            label="measured, saturated",
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter

    for axis in (axes.xaxis,):
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FormatStrFormatter("%g"))
    axes.set_xlabel("offered load (queries per second, Poisson)")
    axes.set_ylabel("p95 latency, queueing included (ms)")
    axes.legend(fontsize=7)
    _save(
        figure,
        out,
        "load",
        "p95 latency against offered load (Poisson arrivals), queueing included.",
        "Line plot of p95 latency against queries per second",
    )
