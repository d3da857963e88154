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
    from evalkit.decision import Decision
    from evalkit.report import Report
    from evalkit.results import RunResult

__all__ = ["__version__", "compare", "compose", "decide", "load", "run"]


def compose(overrides: Sequence[str] = ()):
    """The configuration ``evalkit-run OVERRIDES`` would run (a Hydra ``DictConfig``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalkit.config  # noqa: F401 - registers the schema with Hydra
    from evalkit.cli import CONF_DIR, hydra_errors

    with (
        hydra_errors(list(overrides)),
        initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"),
    ):
        return hydra_compose(config_name="config", overrides=list(overrides))


def run(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> RunResult:
    """Run one experiment, like ``evalkit-run OVERRIDES``, into ``output_dir``.

    Args:
        overrides: Hydra overrides, e.g. ``["dataset=cranfield", "reranker=none"]``.
        output_dir: the run folder (default: ``results/runs/<dataset>_<retriever>_...``).

    Returns:
        The :class:`~evalkit.results.RunResult` (also saved in ``output_dir``).
    """
    from evalkit.runner import default_folder, run_experiment

    cfg = compose(overrides)
    return run_experiment(cfg, Path(output_dir) if output_dir else default_folder(cfg))


def load(path: str | Path) -> list[RunResult]:
    """Every finished run in ``path`` (a run folder, or a folder of runs searched below)."""
    from evalkit.results import find_results

    return find_results(path)


def compare(
    results: str | Path | Sequence[RunResult],
    metric: str = "nDCG@10",
    baseline: str = "auto",
    bootstrap: int = 2000,
) -> Report:
    """Compare systems with CIs and paired significance tests (see :mod:`evalkit.report`)."""
    from evalkit.report import compare as compare_systems

    return compare_systems(results, metric, baseline, bootstrap)


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
    from evalkit.decision import Budget
    from evalkit.decision import decide as decide_budget

    budget = Budget(
        p95_ms, qps, metric, min_gain, alpha, dataset, selective, max_usd_per_1k, replicas
    )
    return decide_budget(results, budget)
