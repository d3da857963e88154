"""Measures: parsed once from strings, computed by ir_measures, under evalkit's rules.

Rules (also written to ``metrics.json`` -> ``contract``):

* Ranking: score descending, ties by doc id descending (trec_eval's order). ir_measures
  backends disagree on ties (its MS MARCO RR backend and pytrec_eval order tied documents
  differently), so every backend receives a score derived from that rank (``n + 1 -
  rank``: positive, strictly decreasing): one order for all, and a measure that reads
  score values (``Compat`` ranks an unretrieved document at 0) sees retrieved documents
  above unretrieved ones, as with real positive scores.
* Every query in the qrels is evaluated; a query with nothing retrieved scores 0 on every
  measure (trec_eval ``-c``), never dropped -- except the counts, which stay true: it is
  one query (``NumQ``) with its own relevant documents (``NumRel``).
* Count measures (``NumQ``, ``NumRet``, ``NumRel``, ``NumRelRet``) aggregate as sums, as
  trec_eval prints them; every other measure as the mean over queries.
* The dataset's relevance level applies to the measures that take one (``P(rel=2)@10``,
  ``NumRelRet`` = ``NumRet(rel=2)``, ``NumRel(rel=2)``) and to no other: ``NumRet`` counts
  every retrieved document, ``nDCG`` uses the grades.
* A measure no installed backend computes exactly on this data is refused before anything
  runs (:func:`check_computable`), in one line naming it and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ir_measures
import pandas as pd

from evalkit.errors import ConfigError, problem
from evalkit.measure_names import TREC_EVAL_NAMES, canonical_name, from_trec_eval  # noqa: F401
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
    "backend_input": (
        "every ir_measures backend receives n + 1 - rank as score, so all agree on ties"
    ),
    "missing_queries": (
        "queries in the qrels with no retrieved documents score 0 (trec_eval -c); NumQ and "
        "NumRel keep their true values"
    ),
    "aggregation": "NumQ, NumRet, NumRel, NumRelRet summed (trec_eval); every other measure "
    "the mean over evaluated queries",
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
        name = canonical_name(name)
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
        measures.append(at_level(measure, relevance_level, str(name)))
    return measures


COUNT_MEASURES = frozenset({"NumQ", "NumRet", "NumRel"})  # NumRelRet is NumRet(rel=1)


def at_level(measure, relevance_level: int, asked: str = ""):
    """``measure`` at the dataset's relevance level where the measure takes one (a binary
    measure's threshold; ``NumRelRet``, which ir_measures spells ``NumRet(rel=1)``), unless
    the user gave a level; never plain ``NumRet``, which counts every retrieved document.

    Example:
        >>> [str(at_level(m, 2, n)) for n in ("NumRet", "NumRelRet", "NumRel")
        ...  for m in [ir_measures.parse_measure(n)]]
        ['NumRet', 'NumRet(rel=2)', 'NumRel(rel=2)']
    """
    if relevance_level == 1 or "rel" not in getattr(measure, "SUPPORTED_PARAMS", {}):
        return measure
    if asked.strip() == "NumRelRet":
        return measure(rel=relevance_level)
    if "rel" in measure.params or measure.NAME == "NumRet":
        return measure
    return measure(rel=relevance_level)


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
        An :class:`Evaluation`; ``aggregate`` is the mean over every query in the qrels
        (the sum for count measures).

    Example:
        >>> qrels = pd.DataFrame({"query_id": ["1", "2"], "doc_id": ["a", "a"],
        ...                       "relevance": [1, 1]})
        >>> run = pd.DataFrame({"query_id": ["1", "1"], "doc_id": ["b", "a"],
        ...                     "score": [2.0, 1.0]})
        >>> evaluate(run, qrels, parse_measures(["RR@10", "NumRel"])).aggregate  # q2: no run
        {'RR@10': 0.25, 'NumRel': 2.0}
    """
    check_run(run)
    judged_queries = sorted(set(qrels[QUERY_ID].astype(str)))
    backend_run = _backend_run(run, judged_queries)
    backend_qrels = pd.DataFrame(
        {
            QUERY_ID: qrels[QUERY_ID].astype(str),
            DOC_ID: qrels[DOC_ID].astype(str),
            RELEVANCE: qrels[RELEVANCE].astype(int),
        }
    )
    measures = unique_measures(measures)
    names = [str(m) for m in measures]
    found = pd.DataFrame(
        list(_calc(measures, backend_qrels, backend_run)), columns=[QUERY_ID, "measure", "value"]
    )
    grid = pd.MultiIndex.from_product([judged_queries, names], names=[QUERY_ID, "measure"])
    per_query = (
        found.drop_duplicates([QUERY_ID, "measure"])
        .set_index([QUERY_ID, "measure"])["value"]
        .reindex(grid)
    )
    # a query the run does not retrieve for: whatever a backend says (some report 0 for
    # NumQ and NumRel, some nothing), it is worth what trec_eval -c gives it
    unretrieved = ~per_query.index.get_level_values(QUERY_ID).isin(set(backend_run[QUERY_ID]))
    per_query = per_query.mask(unretrieved).fillna(_missing_values(measures, backend_qrels, grid))
    per_query = per_query.reset_index()
    grouped = per_query.groupby("measure", sort=False)["value"]
    means, sums = grouped.mean(), grouped.sum()
    aggregate = {
        str(m): float(sums[str(m)] if m.NAME in COUNT_MEASURES else means[str(m)]) for m in measures
    }
    return Evaluation(aggregate=aggregate, per_query=per_query, num_queries=len(judged_queries))


def _backend_run(run: pd.DataFrame, judged_queries: list[str]) -> pd.DataFrame:
    """The run in evalkit's order, as every backend receives it: score ``n + 1 - rank``."""
    ranked = rank_run(run)
    ranked = ranked[ranked[QUERY_ID].astype(str).isin(judged_queries)]
    sizes = ranked.groupby(QUERY_ID)[RANK].transform("max")
    return pd.DataFrame(
        {
            QUERY_ID: ranked[QUERY_ID].astype(str),
            DOC_ID: ranked[DOC_ID].astype(str),
            SCORE: (sizes + 1 - ranked[RANK]).astype(float),
        }
    )


def _calc(measures: list, qrels: pd.DataFrame, run: pd.DataFrame):
    """``(query_id, measure name, value)`` from ir_measures. ``NumRel`` at a level above 1
    has no backend: it is ``NumRel`` of the qrels thresholded at that level."""
    leveled = [m for m in measures if m.NAME == "NumRel" and m.params.get("rel", 1) != 1]
    plain = [m for m in measures if m not in leveled]
    if plain:
        for metric in ir_measures.iter_calc(plain, qrels, run):
            yield metric.query_id, str(metric.measure), float(metric.value)
    for measure in leveled:
        relevant = qrels[qrels[RELEVANCE] >= measure.params["rel"]]
        for query, count in relevant.groupby(QUERY_ID).size().items():
            yield str(query), str(measure), float(count)


def _missing_values(measures: list, qrels: pd.DataFrame, grid: pd.MultiIndex) -> pd.Series:
    """What a (query, measure) no backend reported is worth: 0 (trec_eval ``-c``), except
    that it is still one query (``NumQ``) with its own relevant documents (``NumRel``)."""
    values = pd.Series(0.0, index=grid)
    for measure in measures:
        if measure.NAME == "NumQ":
            values.loc[(slice(None), str(measure))] = 1.0
        elif measure.NAME == "NumRel":
            relevant = qrels[qrels[RELEVANCE] >= measure.params.get("rel", 1)]
            counts = relevant.groupby(QUERY_ID).size()
            for query, count in counts.items():
                values.loc[(str(query), str(measure))] = float(count)
    return values


_PROBE_QRELS = pd.DataFrame(
    {QUERY_ID: ["1", "1", "1", "2"], DOC_ID: ["a", "b", "c", "a"], RELEVANCE: [2, 1, 0, 1]}
)
_PROBE_RUN = pd.DataFrame(
    {
        QUERY_ID: ["1", "1", "1", "2", "2"],
        DOC_ID: ["a", "c", "d", "b", "a"],
        SCORE: [5.0, 4, 3, 2, 1],
    }
)


def check_computable(measures: Sequence, qrels: pd.DataFrame | None = None) -> None:
    """Refuse, before anything runs, a measure that no installed backend computes here.

    Each measure is computed once on a tiny made-up judgment set; then the data-dependent
    limits of the backend that would compute it are checked against ``qrels`` (gdeval, the
    only backend of ``ERR`` and ``nDCG(dcg='exp-log2')``, reads integer query ids and
    grades up to 4 only).

    Example:
        >>> check_computable(parse_measures(["RBP"]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        evalkit.errors.ConfigError: measure RBP cannot be computed here: ...
    """
    for measure in unique_measures(measures):
        try:
            list(_calc([measure], _PROBE_QRELS, _PROBE_RUN))
        except Exception as error:  # a backend's refusal or crash, whatever its type
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            first = re.sub(
                r"invalid param (\w+)=<object object at 0x\w+>", r"\1 must be given", first
            )
            raise ConfigError(
                problem(
                    f"measure {measure} cannot be computed here: {first}",
                    "eval.metrics",
                    "choose another measure, or install the backend ir_measures names",
                )
            ) from None
        if qrels is not None and _backend_of(measure) == "gdeval":
            _check_gdeval(measure, qrels)


def _backend_of(measure) -> str | None:
    """The ir_measures provider that computes ``measure`` (the first available one)."""
    for provider in ir_measures.DefaultPipeline.providers:
        if provider.supports(measure) and provider.is_available():
            return provider.NAME
    return None


def _check_gdeval(measure, qrels: pd.DataFrame) -> None:
    ids = qrels[QUERY_ID].astype(str)
    bad_ids = sorted(set(ids[~ids.str.fullmatch(r"[0-9]+")]))[:3]
    top = int(qrels[RELEVANCE].max()) if len(qrels) else 0
    if bad_ids or top > 4:
        found = f"query ids {bad_ids}" if bad_ids else f"a grade of {top}"
        raise ConfigError(
            problem(
                f"measure {measure} is computed by gdeval, which reads integer query ids and "
                f"grades 0-4 only; these qrels have {found}",
                "eval.metrics",
                "choose another measure (nDCG@10 uses the grades as they are)",
            )
        )
