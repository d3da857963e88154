"""Measures: hand-checked goldens, the tie rule, the missing-query rule, and trec_eval agreement."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evalkit.errors import ConfigError
from evalkit.measures import DEFAULT_MEASURES, evaluate, parse_measures


def frame(rows, columns):
    return pd.DataFrame(rows, columns=columns)


QRELS = frame([("1", "d1", 1), ("1", "d2", 2), ("2", "d9", 1)], ["query_id", "doc_id", "relevance"])


def test_hand_computed_values_per_query():
    run = frame(
        [("1", "d3", 3.0), ("1", "d1", 2.0), ("1", "d2", 1.0)], ["query_id", "doc_id", "score"]
    )
    result = evaluate(run, QRELS, parse_measures(["P@1", "P@3", "RR@10", "nDCG@10", "AP"]))
    q1 = result.per_query[result.per_query.query_id == "1"].set_index("measure")["value"]
    # ranking d3 (0), d1 (1), d2 (2); trec_eval nDCG uses linear gains
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert q1["P@1"] == 0.0
    assert q1["P@3"] == pytest.approx(2 / 3, abs=1e-12)
    assert q1["RR@10"] == 0.5
    assert q1["nDCG@10"] == pytest.approx(dcg / idcg, abs=1e-12)
    assert q1["AP"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-12)


def test_query_without_results_scores_zero_and_is_counted():
    run = frame([("1", "d1", 1.0)], ["query_id", "doc_id", "score"])
    result = evaluate(run, QRELS, parse_measures(["P@1"]))
    assert result.num_queries == 2
    assert result.aggregate["P@1"] == 0.5  # q1: 1, q2 retrieved nothing: 0


def test_ties_follow_trec_eval_order_in_every_backend():
    # d1 and d2 tie; trec_eval puts the larger doc id first (d2), for every measure,
    # although ir_measures' RR backend on its own would order them the other way.
    qrels = frame([("q", "d1", 0), ("q", "d2", 1)], ["query_id", "doc_id", "relevance"])
    run = frame([("q", "d1", 5.0), ("q", "d2", 5.0)], ["query_id", "doc_id", "score"])
    result = evaluate(run, qrels, parse_measures(["P@1", "RR@10"]))
    assert result.aggregate == {"P@1": 1.0, "RR@10": 1.0}


def test_relevance_level_applies_to_binary_measures_only():
    measures = [str(m) for m in parse_measures(["P@10", "nDCG@10", "R@100"], relevance_level=2)]
    assert measures == ["P(rel=2)@10", "nDCG@10", "R(rel=2)@100"]
    run = frame([("1", "d1", 2.0), ("1", "d2", 1.0)], ["query_id", "doc_id", "score"])
    only_q1 = QRELS[QRELS.query_id == "1"]
    result = evaluate(run, only_q1, parse_measures(["P@1"], relevance_level=2))
    assert result.aggregate["P(rel=2)@1"] == 0.0  # d1 has grade 1 < 2


def test_unknown_measure_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"unknown measure 'nDGC@10'.*eval.metrics"):
        parse_measures(["nDGC@10"])


def test_nan_scores_are_rejected_before_measures():
    run = frame([("1", "d1", float("nan"))], ["query_id", "doc_id", "score"])
    with pytest.raises(Exception, match=r"non-finite"):
        evaluate(run, QRELS, parse_measures(["P@1"]))


def pytrec_reference(run: pd.DataFrame, qrels: pd.DataFrame) -> dict[str, float]:
    """Every default measure computed by pytrec_eval (trec_eval's C code) directly."""
    import pytrec_eval

    qrel_dict: dict = {}
    for q, d, r in qrels.itertuples(index=False):
        qrel_dict.setdefault(q, {})[d] = int(r)
    run_dict: dict = {}
    for q, d, s in run[["query_id", "doc_id", "score"]].itertuples(index=False):
        run_dict.setdefault(q, {})[d] = float(s)
    # RR@10 is trec_eval's recip_rank over each query's top 10 (in trec_eval's own order)
    top10 = {
        q: dict(sorted(docs.items(), key=lambda x: (-x[1], _rev(x[0])))[:10])
        for q, docs in run_dict.items()
    }
    judged_qrels = {q: {d: 1 for d in docs} for q, docs in qrel_dict.items()}
    main = pytrec_eval.RelevanceEvaluator(
        qrel_dict, {"ndcg_cut_10", "P_1", "P_5", "P_10", "recall_100", "recall_1000", "map"}
    ).evaluate(run_dict)
    rr = pytrec_eval.RelevanceEvaluator(qrel_dict, {"recip_rank"}).evaluate(top10)
    judged = pytrec_eval.RelevanceEvaluator(judged_qrels, {"P_10"}).evaluate(run_dict)
    names = {
        "nDCG@10": "ndcg_cut_10",
        "P@1": "P_1",
        "P@5": "P_5",
        "P@10": "P_10",
        "R@100": "recall_100",
        "R@1000": "recall_1000",
        "AP": "map",
    }
    queries = sorted(qrel_dict)
    out = {
        ours: float(np.mean([main.get(q, {}).get(theirs, 0.0) for q in queries]))
        for ours, theirs in names.items()
    }
    out["RR@10"] = float(np.mean([rr.get(q, {}).get("recip_rank", 0.0) for q in queries]))
    out["Judged@10"] = float(np.mean([judged.get(q, {}).get("P_10", 0.0) for q in queries]))
    return out


class _rev(str):
    """Sort key that orders strings descending (trec_eval breaks ties by doc id descending)."""

    def __lt__(self, other):
        return str.__gt__(self, other)


@pytest.mark.parametrize("tie_decimals", [None, pytest.param(0, marks=pytest.mark.slow)])
def test_every_default_measure_agrees_with_pytrec_eval_on_cranfield(cranfield, tie_decimals):
    from evalkit.retrieve.bm25 import BM25Retriever

    bm25 = BM25Retriever(show_progress=False)
    bm25.index(cranfield.corpus)
    run = bm25.search(cranfield.queries, k=1000)
    run = run[run.query_id != "7"]  # one judged query with nothing retrieved
    if tie_decimals is not None:  # rounding creates many ties: the tie rule must hold
        run = run.assign(score=run.score.round(tie_decimals))
        assert run.duplicated(["query_id", "score"]).sum() > 1000
    ours = evaluate(run, cranfield.qrels, parse_measures(DEFAULT_MEASURES)).aggregate
    reference = pytrec_reference(run, cranfield.qrels)
    for name in DEFAULT_MEASURES:
        assert ours[name] == pytest.approx(reference[name], abs=1e-9), name
