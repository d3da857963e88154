"""evalkit: two-stage retrieval evaluation and the decision whether to rerank.

The Python API does what the commands do and returns typed objects::

    import evalkit

    result = evalkit.run(["dataset=cranfield", "reranker=biencoder_packaged",
                          "pipeline.depth=30"], "results/runs/bm25-mini")   # RunResult
    results = evalkit.load("results/sweeps/quickstart")                    # [RunResult]
    report = evalkit.compare(results, metric="nDCG@10")                    # Report
    report.to_dataframe()                                                  # tidy table
    decision = evalkit.decide(report, p95_ms=500)                          # Decision
    print(decision.render())

``evalkit-run``, ``evalkit-report`` and ``evalkit-decide`` are thin layers over these.
Heavy libraries (torch, sentence-transformers) load only when a run needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.2.0"

if TYPE_CHECKING:
    from evalkit.analysis.decision import Decision
    from evalkit.analysis.report import Report
    from evalkit.results import RunResult

__all__ = [
    "__version__",
    "compare",
    "compare_runs",
    "compose",
    "decide",
    "evaluate_runs",
    "load",
    "run",
]


def compose(overrides: Sequence[str] = ()):
    """The configuration ``evalkit-run OVERRIDES`` would run (a Hydra ``DictConfig``)."""
    from evalkit.config.compose import compose as compose_config

    return compose_config(overrides)


def run(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> RunResult:
    """Run one experiment, like ``evalkit-run OVERRIDES``, into ``output_dir``.

    Args:
        overrides: Hydra overrides, e.g. ``["dataset=cranfield", "reranker=none"]``.
        output_dir: the run folder (default: ``results/runs/<dataset>_<retriever>_...``).

    Returns:
        The :class:`~evalkit.results.RunResult` (also saved in ``output_dir``).
    """
    from evalkit.analysis.run_plots import write_run_plots
    from evalkit.config.compose import default_folder
    from evalkit.runner import run_experiment

    cfg = compose(overrides)
    result = run_experiment(cfg, Path(output_dir) if output_dir else default_folder(cfg))
    write_run_plots(result)
    return result


def load(path: str | Path) -> list[RunResult]:
    """Every finished run in ``path`` (a run folder, or a folder of runs searched below)."""
    from evalkit.results import find_results

    return find_results(path)


def evaluate_runs(runs, qrels, metrics=None, relevance_level: int = 1, out=None):
    """Score existing TREC runs against qrels with no corpus, as ``evalkit-eval`` does
    (see :func:`evalkit.external.evaluate_runs`); ``{name: RunResult}``."""
    from evalkit.external import evaluate_runs as score_runs
    from evalkit.measures import DEFAULT_MEASURES

    return score_runs(runs, qrels, metrics or DEFAULT_MEASURES, relevance_level, out)


def compare(
    results: str | Path | Sequence[RunResult],
    metric: str = "nDCG@10",
    baseline: str = "auto",
    bootstrap: int | None = None,
) -> Report:
    """Compare systems with CIs and paired significance tests (:mod:`evalkit.analysis.report`)."""
    from evalkit.analysis.report import compare as compare_systems
    from evalkit.analysis.stats import BOOTSTRAP_SAMPLES

    return compare_systems(results, metric, baseline, bootstrap or BOOTSTRAP_SAMPLES)


def compare_runs(
    runs,
    qrels: str | Path,
    metric: str = "nDCG@10",
    baseline: str | None = None,
    metrics=None,
    relevance_level: int = 1,
    bootstrap: int | None = None,
    all_pairs: bool = False,
) -> Report:
    """The comparison report over existing TREC runs, with no corpus (ranx's ``compare``).

    Args:
        runs: ``{name: run file}`` (or run files, named by their file name).
        qrels: TREC qrels (or a BEIR ``.tsv``); runs are scored as trec_eval ``-c`` does.
        metric: the headline measure; ``metrics``: every measure computed (default set).
        baseline: the run every other is tested against (default: the first one).
        all_pairs: also test every pair, Holm-corrected over all of them
            (``report.pairs``, and an "All pairs" table in the saved report).
    """
    from evalkit.analysis.pairs import all_pairs as pairs_of

    results = evaluate_runs(runs, qrels, metrics, relevance_level)
    names = list(results)
    if baseline is not None and baseline not in names:
        from evalkit.errors import DataError, problem

        raise DataError(
            problem(
                f"baseline '{baseline}' is not one of the runs", "baseline", f"use one of {names}"
            )
        )
    report = compare(list(results.values()), metric, baseline or names[0], bootstrap)
    if all_pairs:
        report.pairs = pairs_of(report)
    return report


def decide(
    results: str | Path | Report,
    p95_ms: float,
    qps: float | None = None,
    metric: str = "nDCG@10",
    min_gain: float = 0.0,
    alpha: float = 0.05,
    dataset: str | None = None,
    selective: bool = False,
    max_usd_per_1k: float | None = None,
    replicas: int | None = None,
) -> Decision:
    """Recommend a configuration under a latency / QPS budget, or "skip reranking";
    ``selective=True`` adds the best per-query reranking policy."""
    from evalkit.analysis.budget import Budget
    from evalkit.analysis.decision import decide as decide_budget

    budget = Budget(
        p95_ms=p95_ms,
        qps=qps,
        metric=metric,
        min_gain=min_gain,
        alpha=alpha,
        dataset=dataset,
        selective=selective,
        max_usd_per_1k=max_usd_per_1k,
        replicas=replicas,
    )
    return decide_budget(results, budget)
