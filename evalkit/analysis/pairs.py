"""Every pair of systems compared on the same queries, Holm-corrected over all pairs
(``evalkit.compare_runs(..., all_pairs=True)``; ranx's ``compare`` with Holm)."""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

import pandas as pd

from evalkit.analysis.stats import compare_paired, holm

if TYPE_CHECKING:
    from evalkit.analysis.report import Report


def all_pairs(report: Report) -> pd.DataFrame:
    """One row per (system a, system b) on each dataset: b - a on the headline measure
    with its bootstrap CI, the randomisation test and Holm across every pair."""
    rows = []
    for dataset in sorted({s.dataset for s in report.systems}):
        measure = report.metric_for(dataset)
        systems = [
            s
            for s in report.systems
            if s.dataset == dataset and s.quality_meaningful and measure in s.per_query
        ]
        for a, b in combinations(systems, 2):
            common = a.per_query.index.intersection(b.per_query.index)
            test = compare_paired(
                a.per_query.loc[common, measure].to_numpy(),
                b.per_query.loc[common, measure].to_numpy(),
                samples=report.bootstrap,
            )
            rows.append(
                {
                    "dataset": dataset,
                    "system": report.labels[b.key],
                    "baseline": report.labels[a.key],
                    "measure": measure,
                    "gain": test.gain,
                    "gain_ci_low": test.gain_ci_low,
                    "gain_ci_high": test.gain_ci_high,
                    "p_randomization": test.p_randomization,
                    "wins": test.wins,
                    "ties": test.ties,
                    "losses": test.losses,
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table["p_randomization_holm"] = holm(table.p_randomization.tolist())
    return table
