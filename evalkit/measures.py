"""Measures: parsed once from strings, computed by ir_measures, under evalkit's rules.

Rules (also written to ``metrics.json`` -> ``contract``):

* Ranking: score descending, ties by doc id descending (trec_eval's order). ir_measures
  backends disagree on ties (its MS MARCO RR backend and pytrec_eval order tied documents
  differently), so every backend receives ``-rank`` as the score: one order for all.
* Every query in the qrels is evaluated; a query with nothing retrieved scores 0 on every
  measure (trec_eval ``-c``), never dropped.
* Binary measures use the dataset's relevance level (``P(rel=2)@10`` on TREC DL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ir_measures
import pandas as pd

from evalkit.errors import ConfigError, problem
from evalkit.types import DOC_ID, QUERY_ID, RANK, RELEVANCE, SCORE, check_run, rank_run

DEFAULT_MEASURES = (
    "nDCG@10",
    "P@1",
    "P@5",
    "P@10",
    "RR@10",
    "R@100",
    "R@1000",
    "AP",
    "Judged@10",
)

CONTRACT = {
    "ranking": "score descending, ties broken by doc id descending (trec_eval order)",
    "backend_input": "every ir_measures backend receives -rank as score, so all agree on ties",
    "missing_queries": "queries in the qrels with no retrieved documents score 0 (trec_eval -c)",
    "evaluated_queries": "queries that have at least one judgment in the split",
    "measures_library": f"ir_measures {ir_measures.__version__}",
    "reranking": "top `depth` candidates rescored; first-stage tail kept below them",
    "scores": "rerankers rank on raw fp32 logits (no sigmoid)",
}


def parse_measures(names: Iterable[str], relevance_level: int = 1) -> list:
    """Parse measure strings once; apply the dataset's relevance level to binary measures.

    Example:
        >>> [str(m) for m in parse_measures(["nDCG@10", "P@10"], relevance_level=2)]
        ['nDCG@10', 'P(rel=2)@10']
    """
    measures = []
    for name in names:
        try:
            measure = ir_measures.parse_measure(str(name))
        except (ValueError, NameError, SyntaxError, TypeError, AssertionError) as error:
            raise ConfigError(
                problem(
                    f"unknown measure '{name}' ({error})",
                    "eval.metrics",
                    "use ir_measures names such as nDCG@10, P@10, RR@10, R@100, AP, Judged@10",
                )
            ) from None
        _check_params(measure, name)
        if (
            relevance_level != 1
            and "rel" in getattr(measure, "SUPPORTED_PARAMS", {})
            and "rel" not in measure.params
        ):
            measure = measure(rel=relevance_level)
        measures.append(measure)
    return measures


def _check_params(measure, name: str) -> None:
    """Cutoffs and relevance levels must be >= 1 (0 aborts trec_eval's C code)."""
    for param in ("cutoff", "rel"):
        value = measure.params.get(param)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(
                problem(
                    f"measure '{name}' has {param}={value!r}; it must be an integer >= 1",
                    "eval.metrics",
                    "use e.g. nDCG@10, P(rel=2)@10",
                )
            )


def unique_measures(measures: Iterable) -> list:
    """Measures as a set that keeps the first order: ``R@100`` asked twice is one column.

    Example:
        >>> [str(m) for m in unique_measures(parse_measures(["R@100", "AP", "R@100"]))]
        ['R@100', 'AP']
    """
    seen: dict[str, object] = {}
    for measure in measures:
        seen.setdefault(str(measure), measure)
    return list(seen.values())


def measure_name(name: str, relevance_level: int = 1) -> str:
    """The column name a measure string has on a dataset with this relevance level.

    Example:
        >>> measure_name("P@10", relevance_level=2)
        'P(rel=2)@10'
    """
    return str(parse_measures([name], relevance_level)[0])


def measure_sort_key(name: str) -> tuple:
    """Order measure names by family, then cutoff as a number (``P@5`` before ``P@10``)."""
    measure = ir_measures.parse_measure(name)
    cutoff = measure.params.get("cutoff")
    return (
        measure.NAME,
        str({k: v for k, v in measure.params.items() if k != "cutoff"}),
        cutoff if cutoff is not None else float("inf"),
    )


@dataclass(frozen=True)
class Evaluation:
    """Measures of one run: ``aggregate`` (measure name -> mean) and ``per_query`` frame."""

    aggregate: dict[str, float]
    per_query: pd.DataFrame  # query_id, measure, value
    num_queries: int


def evaluate(run: pd.DataFrame, qrels: pd.DataFrame, measures: Sequence) -> Evaluation:
    """Evaluate a run against qrels with ir_measures under evalkit's rules.

    Args:
        run: frame ``query_id, doc_id, score`` (any order; ranked here).
        qrels: frame ``query_id, doc_id, relevance``; its queries are the evaluated set.
        measures: parsed measures (see :func:`parse_measures`).

    Returns:
        An :class:`Evaluation`; ``aggregate`` averages over every query in the qrels.

    Example:
        >>> qrels = pd.DataFrame({"query_id": ["1", "2"], "doc_id": ["a", "a"],
        ...                       "relevance": [1, 1]})
        >>> run = pd.DataFrame({"query_id": ["1", "1"], "doc_id": ["b", "a"],
        ...                     "score": [2.0, 1.0]})
        >>> evaluate(run, qrels, parse_measures(["RR@10"])).aggregate  # q2 retrieved nothing
        {'RR@10': 0.25}
    """
    check_run(run)
    ranked = rank_run(run)
    judged_queries = sorted(set(qrels[QUERY_ID]))
    ranked = ranked[ranked[QUERY_ID].isin(judged_queries)]
    backend_run = pd.DataFrame(
        {
            QUERY_ID: ranked[QUERY_ID].astype(str),
            DOC_ID: ranked[DOC_ID].astype(str),
            SCORE: -ranked[RANK].astype(float),
        }
    )
    backend_qrels = pd.DataFrame(
        {
            QUERY_ID: qrels[QUERY_ID].astype(str),
            DOC_ID: qrels[DOC_ID].astype(str),
            RELEVANCE: qrels[RELEVANCE].astype(int),
        }
    )
    measures = unique_measures(measures)
    names = [str(m) for m in measures]
    rows = [
        (metric.query_id, str(metric.measure), float(metric.value))
        for metric in ir_measures.iter_calc(list(measures), backend_qrels, backend_run)
    ]
    found = pd.DataFrame(rows, columns=[QUERY_ID, "measure", "value"])
    grid = pd.MultiIndex.from_product([judged_queries, names], names=[QUERY_ID, "measure"])
    per_query = (
        found.drop_duplicates([QUERY_ID, "measure"])
        .set_index([QUERY_ID, "measure"])["value"]
        .reindex(grid, fill_value=0.0)
        .reset_index()
    )
    means = per_query.groupby("measure", sort=False)["value"].mean()
    aggregate = {name: float(means[name]) for name in names}
    return Evaluation(aggregate=aggregate, per_query=per_query, num_queries=len(judged_queries))
