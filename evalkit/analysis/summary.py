"""The table printed at the end of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from evalkit.results import RunResult


def print_summary(result: RunResult, console: Console | None = None) -> None:
    """The quality table, then the notes a user should see, then latency and load."""
    console = console or Console(stderr=False)
    console.print(f"evalkit — {result.dataset}, {result.metrics['num_queries']} queries")
    console.print(_quality_table(result.metrics))
    for line in [*_notes(result), *_latency_lines(result), *_load_lines(result.load_curve)]:
        console.print(line)
    console.print(f"results: {result.folder}")


def _quality_table(metrics: dict) -> Table:
    reranked = metrics.get("reranked")
    table = Table()
    table.add_column("measure")
    table.add_column("first stage", justify="right")
    if reranked:
        table.add_column("reranked", justify="right")
        table.add_column("Δ", justify="right")
    for name, value in metrics["first_stage"].items():
        row = [name, f"{value:.4f}"]
        if reranked:
            after = reranked[name]
            row += [f"{after:.4f}", f"{after - value:+.4f}"]
        table.add_row(*row)
    return table


def _notes(result: RunResult) -> list[str]:
    metrics, lines = result.metrics, []
    depth = metrics.get("recall_at_depth")
    if depth and result.identity.reranked:
        lines.append(f"ceiling for any reranker: {depth['measure']} = {depth['value']:.4f}")
    policy = metrics.get("policy")
    if policy:
        lines.append(
            f"selective policy {policy['rule']}: reranked {policy['queries_reranked']} queries "
            f"({policy['share_reranked']:.0%})"
        )
    if result.cost_only:
        lines.append(f"[yellow]cost-only run: {metrics.get('quality_note')}[/yellow]")
    health = metrics.get("reranker_health") or {}
    if health.get("degenerate"):
        lines.append(
            f"[red]reranker looks degenerate: {health['constant_score_fraction']:.0%} of queries "
            f"got one score for all candidates, tie rate {health['tie_rate']:.0%} — is this "
            "really a cross-encoder?[/red]"
        )
    if metrics.get("data_warnings"):
        lines.append(f"data warnings: {metrics['data_warnings']}")
    return lines


def _latency_lines(result: RunResult) -> list[str]:
    lines = []
    online = result.latency.get("online")
    if online:
        parts = [
            f"{stage}: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms"
            for stage, s in online.items()
            if isinstance(s, dict) and "p50_ms" in s
        ]
        total = online.get("total", {})
        queries = (online.get("conditions") or {}).get("sample_queries")
        lines.append(
            f"online latency ({queries} queries) — "
            + "; ".join(parts)
            + (f"; {total['qps']:.1f} QPS" if total.get("qps") else "")
        )
    pairs = (result.latency.get("offline") or {}).get("rerank_pairs_per_second")
    if pairs:
        lines.append(f"reranker throughput: {pairs:,.1f} pairs/s (the run's own pairs, uncached)")
    return lines


def _load_lines(load: dict | None) -> list[str]:
    if not load:
        return []
    points = ", ".join(
        f"{p['offered_qps']:g} QPS → p95 {p['p95_ms']:.1f} ms"
        + (" (saturated)" if p["saturated"] else "")
        for p in load["points"]
    )
    lines = [f"under load (open loop, one replica): {points}"]
    checks = load.get("validation") or []
    if checks:
        worst = max(abs(c["relative_error"]) for c in checks)
        tolerance = load["validation_tolerance"]
        lines.append(
            f"simulator check at one replica: worst p95 error {worst:.0%} "
            f"({'within' if worst <= tolerance else 'outside'} {tolerance:.0%})"
        )
    return lines
