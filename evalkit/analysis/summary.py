"""The table printed at the end of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from evalkit.results import RunResult


def print_summary(result: RunResult, console: Console | None = None) -> None:
    console = console or Console(stderr=False)
    metrics = result.metrics
    reranked = metrics.get("reranked")
    console.print(f"evalkit — {result.dataset}, {metrics['num_queries']} queries")
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
    console.print(table)
    depth = metrics.get("recall_at_depth")
    if depth and result.identity.reranked:
        console.print(f"ceiling for any reranker: {depth['measure']} = {depth['value']:.4f}")
    policy = metrics.get("policy")
    if policy:
        console.print(
            f"selective policy {policy['rule']}: reranked {policy['queries_reranked']} queries "
            f"({policy['share_reranked']:.0%})"
        )
    if result.cost_only:
        console.print(f"[yellow]cost-only run: {metrics.get('quality_note')}[/yellow]")
    health = metrics.get("reranker_health") or {}
    if health.get("degenerate"):
        console.print(
            f"[red]reranker looks degenerate: {health['constant_score_fraction']:.0%} of queries "
            f"got one score for all candidates, tie rate {health['tie_rate']:.0%} — is this "
            "really a cross-encoder?[/red]"
        )
    if metrics.get("data_warnings"):
        console.print(f"data warnings: {metrics['data_warnings']}")
    online = result.latency.get("online")
    if online:
        parts = [
            f"{stage}: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms"
            for stage, s in online.items()
            if isinstance(s, dict) and "p50_ms" in s
        ]
        total = online.get("total", {})
        queries = (online.get("conditions") or {}).get("sample_queries")
        console.print(
            f"online latency ({queries} queries) — "
            + "; ".join(parts)
            + (f"; {total['qps']:.1f} QPS" if total.get("qps") else "")
        )
    pairs = (result.latency.get("offline") or {}).get("rerank_pairs_per_second")
    if pairs:
        console.print(f"reranker throughput: {pairs:,.1f} pairs/s (the run's own pairs, uncached)")
    load = result.load_curve
    if load:
        points = ", ".join(
            f"{p['offered_qps']:g} QPS → p95 {p['p95_ms']:.1f} ms"
            + (" (saturated)" if p["saturated"] else "")
            for p in load["points"]
        )
        console.print(f"under load (open loop, one replica): {points}")
        checks = load.get("validation") or []
        if checks:
            worst = max(abs(c["relative_error"]) for c in checks)
            console.print(
                f"simulator check at one replica: worst p95 error {worst:.0%} "
                f"({'within' if worst <= load['validation_tolerance'] else 'outside'} "
                f"{load['validation_tolerance']:.0%})"
            )
    console.print(f"results: {result.folder}")
