"""The table printed at the end of a run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_summary(
    metrics: dict, latency: dict | None, folder: str, console: Console | None = None
) -> None:
    console = console or Console(stderr=False)
    reranked = metrics.get("reranked")
    title = f"evalkit — {metrics['num_queries']} queries"
    table = Table(title=title, show_lines=False)
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
    console.print(table)
    depth = metrics.get("recall_at_depth")
    if depth:
        console.print(f"ceiling for any reranker: {depth['measure']} = {depth['value']:.4f}")
    if not metrics.get("quality_meaningful", True):
        console.print(f"[yellow]{metrics.get('quality_note')}[/yellow]")
    health = metrics.get("reranker_health") or {}
    if health.get("degenerate"):
        console.print(
            f"[red]reranker looks degenerate: {health['constant_score_fraction']:.0%} of queries "
            f"got one score for all candidates, tie rate {health['tie_rate']:.0%} — is this "
            "really a cross-encoder?[/red]"
        )
    if metrics.get("data_warnings"):
        console.print(f"data warnings: {metrics['data_warnings']}")
    online = (latency or {}).get("online")
    if online:
        parts = [
            f"{stage}: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms"
            for stage, s in online.items()
            if isinstance(s, dict) and "p50_ms" in s
        ]
        total = online.get("total", {})
        console.print(
            "online latency — "
            + "; ".join(parts)
            + (f"; {total['qps']:.1f} QPS" if total.get("qps") else "")
        )
    console.print(f"results: {folder}")
