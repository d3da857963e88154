"""The one data shape that flows through evalkit: pandas frames with ir_measures column names.

* corpus:  ``doc_id, title, text``
* queries: ``query_id, text``
* qrels:   ``query_id, doc_id, relevance``
* run:     ``query_id, doc_id, score`` (plus ``rank`` once ranked)

Every ranking in evalkit follows one rule (trec_eval's): score descending, ties broken by
doc id descending. :func:`rank_run` applies it; everything that orders documents calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evalkit.errors import DataError, problem

QUERY_ID = "query_id"
DOC_ID = "doc_id"
SCORE = "score"
RANK = "rank"
RELEVANCE = "relevance"
RUN_COLUMNS = (QUERY_ID, DOC_ID, SCORE)
QRELS_COLUMNS = (QUERY_ID, DOC_ID, RELEVANCE)

Clock = Callable[[], int]  # nanoseconds, e.g. time.perf_counter_ns
# A stage takes the previous stage's output (the query for the first) and returns its own.
Stage = tuple[str, Callable[[object], object]]


@dataclass(frozen=True)
class Dataset:
    """A loaded test collection.

    Args:
        name: short name used in result folders and reports.
        corpus: frame ``doc_id, title, text`` (unique doc ids).
        queries: frame ``query_id, text`` restricted to the evaluated queries.
        qrels: frame ``query_id, doc_id, relevance``.
        relevance_level: minimum grade that counts as relevant for binary measures.
        exclude_self: drop a retrieved document whose id equals the query id (ArguAna, Quora).
        split: the qrels split that was loaded.
        warnings: counted data problems found while loading (name -> count).
    """

    name: str
    corpus: pd.DataFrame
    queries: pd.DataFrame
    qrels: pd.DataFrame
    relevance_level: int = 1
    exclude_self: bool = False
    split: str = "test"
    warnings: dict[str, int] = field(default_factory=dict)


def check_columns(frame: pd.DataFrame, required: tuple[str, ...], what: str) -> None:
    """Raise a DataError naming the missing columns and the ones that were found."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            problem(
                f"{what}: missing columns {missing} (found {list(frame.columns)})",
                fix=f"provide columns {list(required)}",
            )
        )


def check_run(run: pd.DataFrame, what: str = "run") -> None:
    """Validate a run frame: columns present, scores finite, no duplicate (query, doc) pairs."""
    check_columns(run, RUN_COLUMNS, what)
    scores = run[SCORE].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        first = run.loc[bad].iloc[0]
        raise DataError(
            problem(
                f"{what}: {int(bad.sum())} non-finite scores (NaN or inf), first for query "
                f"'{first[QUERY_ID]}' doc '{first[DOC_ID]}'",
                fix="the model produced invalid scores; check its dtype (fp16 overflow?) "
                "and inputs",
            )
        )
    duplicated = run.duplicated([QUERY_ID, DOC_ID])
    if duplicated.any():
        first = run.loc[duplicated].iloc[0]
        raise DataError(
            problem(
                f"{what}: document '{first[DOC_ID]}' appears twice for query '{first[QUERY_ID]}'",
                fix="a run lists each (query, document) pair once",
            )
        )


def rank_run(run: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Order a run by the evaluation rule and number the ranks from 1.

    Score descending; ties broken by doc id descending (the order trec_eval uses). Returns
    a new frame ``query_id, doc_id, score, rank`` (the input is not modified); with ``k``
    only the top ``k`` per query are kept.

    Example:
        >>> run = pd.DataFrame({"query_id": ["q"] * 3, "doc_id": ["a", "b", "c"],
        ...                     "score": [1.0, 1.0, 2.0]})
        >>> rank_run(run)[["doc_id", "rank"]].values.tolist()
        [['c', 1], ['b', 2], ['a', 3]]
    """
    check_columns(run, RUN_COLUMNS, "run")
    ordered = run.loc[:, list(RUN_COLUMNS)].sort_values(
        [QUERY_ID, SCORE, DOC_ID], ascending=[True, False, False], kind="mergesort"
    )
    ordered[RANK] = ordered.groupby(QUERY_ID, sort=False).cumcount() + 1
    if k is not None:
        ordered = ordered[ordered[RANK] <= k]
    return ordered.reset_index(drop=True)


def empty_run() -> pd.DataFrame:
    """A run with no rows and the right columns and dtypes."""
    return pd.DataFrame(
        {
            QUERY_ID: pd.Series(dtype=str),
            DOC_ID: pd.Series(dtype=str),
            SCORE: pd.Series(dtype=np.float64),
        }
    )
