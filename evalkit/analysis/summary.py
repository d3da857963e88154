"""The table printed at the end of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from evalkit.results.run_records import LoadCurve, RunLatency, RunMetrics

if TYPE_CHECKING:
    from evalkit.results import RunResult


def print_summary(result: RunResult, console: Console | None = None) -> None:
    """The quality table, then the notes a user should see, then latency and load."""
    console = console or Console(stderr=False)
    metrics = result.metrics_record
    console.print(f"evalkit — {result.dataset}, {metrics.num_queries} queries")
    console.print(_quality_table(metrics))
    lines = [
        *_notes(metrics, result.identity.reranked),
        *_latency_lines(result.latency_record),
        *_load_lines(result.load_record),
    ]
    for line in lines:
        console.print(line)
    console.print(f"results: {result.folder}")


def _quality_table(metrics: RunMetrics) -> Table:
    reranked = metrics.reranked
    table = Table()
    table.add_column("measure")
    table.add_column("first stage", justify="right")
    if reranked:
        table.add_column("reranked", justify="right")
        table.add_column("Δ", justify="right")
    for name, value in metrics.first_stage.items():
        row = [name, f"{value:.4f}"]
        if reranked:
            after = reranked[name]
            row += [f"{after:.4f}", f"{after - value:+.4f}"]
        table.add_row(*row)
    return table


def _notes(metrics: RunMetrics, reranked: bool) -> list[str]:
    lines = []
    if metrics.recall_at_depth and reranked:
        measure, value = metrics.recall_at_depth
        lines.append(f"ceiling for any reranker: {measure} = {value:.4f}")
    if metrics.policy:
        lines.append(
            f"selective policy {metrics.policy.rule}: reranked {metrics.policy.queries_reranked} "
            f"queries ({metrics.policy.share_reranked:.0%})"
        )
    if not metrics.quality_meaningful:
        lines.append(f"[yellow]cost-only run: {metrics.quality_note}[/yellow]")
    health = metrics.health
    if health is not None and health.degenerate:
        lines.append(
            f"[red]reranker looks degenerate: {health.constant_score_fraction:.0%} of queries "
            f"got one score for all candidates, tie rate {health.tie_rate:.0%} — is this "
            "really a cross-encoder?[/red]"
        )
    if metrics.data_warnings:
        lines.append(f"data warnings: {metrics.data_warnings}")
    return lines


def _latency_lines(latency: RunLatency) -> list[str]:
    lines = []
    online = latency.online
    if online:
        parts = [
            f"{name}: p50 {stage.p50_ms:.1f} ms, p95 {stage.p95_ms:.1f} ms"
            for name, stage in online.stages.items()
        ]
        total = online.stages.get("total")
        lines.append(
            f"online latency ({online.sample_queries} queries) — "
            + "; ".join(parts)
            + (f"; {total.qps:.1f} QPS" if total is not None and total.qps else "")
        )
    pairs = latency.rerank_pairs_per_second
    if pairs:
        lines.append(f"reranker throughput: {pairs:,.1f} pairs/s (the run's own pairs, uncached)")
    return lines


def _load_lines(load: LoadCurve | None) -> list[str]:
    if load is None:
        return []
    points = ", ".join(
        f"{p.offered_qps:g} QPS → p95 {p.p95_ms:.1f} ms" + (" (saturated)" if p.saturated else "")
        for p in load.points
    )
    lines = [f"under load (open loop, one replica): {points}"]
    if load.validation:
        worst = max(abs(c.relative_error) for c in load.validation)
        tolerance = load.validation_tolerance
        line = (
            f"simulator check at one replica: worst p95 error {worst:.0%} "
            f"({'within' if worst <= tolerance else 'outside'} {tolerance:.0%})"
        )
        banded = [c for c in load.validation if c.within_band is not None]
        if banded:
            outside = [f"{c.offered_qps:g}" for c in banded if not c.within_band]
            line += (
                "; measured p95 outside the range of simulated runs of the same length at "
                + ", ".join(outside)
                + " QPS"
                if outside
                else "; every measured p95 inside the range (5-95%) of simulated runs of the "
                "same length"
            )
        lines.append(line)
    return lines
