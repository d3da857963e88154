"""Selective reranking on hand-checkable cases: features, cross-validation without
leakage, the curve's endpoints, the oracle ceiling, and decide --selective."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evalkit.analysis.selective import (
    Costs,
    curve,
    deploy_threshold,
    first_stage_features,
    learned_scores,
    learned_selection,
    query_features,
    threshold_selection,
)
from tests.fakeruns import make_run


def test_score_features_by_hand():
    run = pd.DataFrame(
        {
            "query_id": ["flat"] * 4 + ["peak"] * 2,
            "doc_id": ["a", "b", "c", "d", "a", "b"],
            "score": [1.0, 1.0, 1.0, 1.0, 5.0, 1.0],
        }
    )
    features = first_stage_features(run)
    flat, peak = features.loc["flat"], features.loc["peak"]
    assert (flat.top1, flat.margin, flat.spread, flat.dropoff) == (1.0, 0.0, 0.0, 0.0)
    assert flat.entropy == pytest.approx(1.0)  # four equal scores: maximal entropy
    # two scores 5 and 1: softmax weights e^4/(1+e^4) and 1/(1+e^4); entropy / log 2
    w = math.exp(4) / (1 + math.exp(4))
    expected = -(w * math.log(w) + (1 - w) * math.log(1 - w)) / math.log(2)
    assert peak.entropy == pytest.approx(expected) and peak.margin == 4.0


def test_query_features_by_hand():
    corpus = ["wind tunnel", "wind", "heat"]
    queries = pd.DataFrame({"query_id": ["q"], "text": ["Wind heat plasma"]})
    f = query_features(queries, corpus).loc["q"]
    # N = 3; df(wind) = 2, df(heat) = 1, plasma unseen -> df 1
    assert f.length == 3.0
    assert f.idf_min == pytest.approx(math.log(3 / 2))
    assert f.idf_max == pytest.approx(math.log(3))
    assert f.idf_mean == pytest.approx((math.log(1.5) + 2 * math.log(3)) / 3)


def test_thresholds_are_never_fitted_on_the_evaluated_queries():
    # fold 0: low feature -> reranking helps; fold 1: the opposite. Fitted in-sample, a
    # threshold would pick every helped query; cross-validated, each fold gets the other
    # fold's rule and picks the hurt ones.
    feature = np.array([0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9])
    gain = np.array([1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0])
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    picked = threshold_selection(feature, gain, fold, share=0.5)
    assert picked.sum() == 4 and gain[picked].sum() == -4.0
    # the same rule fitted on each fold's own queries would have won: +4
    own = np.zeros(8, dtype=bool)
    for f in (0, 1):
        side, cut = deploy_threshold(feature[fold == f], gain[fold == f], 0.5)
        values = feature[fold == f]
        own[fold == f] = values <= cut if side == "low" else values >= cut
    assert gain[own].sum() == 4.0


def test_learned_policy_recovers_a_rule_that_holds_in_every_fold():
    rng = np.random.default_rng(0)
    feature = rng.uniform(size=(60, 1))
    gain = np.where(feature[:, 0] < 0.5, 0.3, -0.3)
    fold = np.arange(60) % 5
    picked = learned_selection(learned_scores(feature, gain, fold), fold, share=0.5)
    assert (gain[picked] > 0).mean() > 0.9


@pytest.fixture
def case():
    n = 40
    queries = [str(i) for i in range(n)]
    small_margin = np.arange(n) % 2 == 0  # half the queries: the first stage is unsure
    never = pd.Series(0.5, index=queries)
    always = pd.Series(np.where(small_margin, 1.0, 0.0), index=queries)
    features = pd.DataFrame(
        {"margin": np.where(small_margin, 0.1, 2.0) + np.arange(n) * 1e-3}, index=queries
    )
    costs = Costs(np.full(10, 2.0), np.full(10, 100.0), depth=20)
    return never, always, features, costs


def test_curve_endpoints_oracle_and_costs(case):
    never, always, features, costs = case
    points = curve(never, always, features, costs, bootstrap=200)
    by = points.set_index("policy")
    assert by.loc["never", "mean"] == never.mean() == 0.5
    assert by.loc["always", "mean"] == always.mean() == 0.5
    assert by.loc["never", "implied_p95_ms"] == 2.0
    assert by.loc["always", "implied_p95_ms"] == 102.0
    assert by.loc["always", "pairs_per_query"] == 20.0
    ceiling = points[points.policy == "oracle"]["mean"].max()
    assert ceiling == 0.75  # rerank exactly the 20 helped queries
    assert (points["mean"] <= ceiling + 1e-12).all()
    half = points[(points.policy == "feature:margin") & (points.target_share == 0.5)].iloc[0]
    assert (half.share_reranked, half["mean"], half.gain_over_never) == (0.5, 0.75, 0.25)
    assert half.pairs_per_query == 10.0


def test_decide_selective_recommends_the_policy_with_its_evidence(tmp_path):
    import evalkit

    n = 40
    small = np.arange(n) % 2 == 0
    scores = [[1.0, 0.95, 0.5] if s else [3.0, 1.0, 0.5] for s in small]  # margin .05 or 2
    make_run(
        tmp_path,
        "run",
        [0.5] * n,
        np.where(small, 1.0, 0.0).tolist(),
        first_stage_scores=scores,
        p95_total=50.0,
    )
    decision = evalkit.decide(tmp_path, p95_ms=1000, selective=True)
    assert decision.decision == "first_stage"  # always-rerank gains exactly 0: no reranker
    chosen = decision.selective
    assert chosen["decision"] == "policy"
    evidence = chosen["evidence"]
    assert evidence["share_reranked"] == 0.5 and evidence["gain_over_never"] == 0.25
    assert evidence["p_randomization_vs_never"] < 0.05
    assert "rerank 50% of queries" in chosen["message"]
    assert "always-rerank gains +0.0000" in chosen["message"]


@pytest.mark.slow  # an end-to-end run in a subprocess (the fast tier stays under 3 min)
def test_a_runnable_policy_reranks_exactly_the_queries_it_selects(tmp_path, tiny_cross_encoder):
    from evalkit.runner import run_experiment
    from evalkit.trec import read_trec_run
    from tests.conftest import TOY, compose

    common = [
        "dataset=local",
        f"dataset.path={TOY}",
        f"cache.dir={tmp_path / 'cache'}",
        "show_progress=false",
        "reranker=minilm_l6",
        f"reranker.model={tiny_cross_encoder}",
        "pipeline.depth=5",
        "latency.max_queries=4",
        "latency.warmup=0",
    ]
    always = run_experiment(compose(common), tmp_path / "always")
    first = read_trec_run(tmp_path / "always" / "run.first_stage.trec")
    # margins by hand from the first-stage run file: top score minus the second
    margins = {
        q: (lambda s: s[0] - s[1] if len(s) > 1 else 0.0)(sorted(g.score, reverse=True))
        for q, g in first.groupby("query_id")
    }
    threshold = sorted(margins.values())[len(margins) // 2]
    expected = {q for q, m in margins.items() if m <= threshold}
    assert 0 < len(expected) < len(margins)
    policy = run_experiment(
        compose([*common, f"pipeline.policy=margin_below_{threshold!r}"]), tmp_path / "policy"
    )
    assert policy.metrics["policy"]["queries_reranked"] == len(expected)
    never = always.stage_table("first_stage")["nDCG@10"]
    full = always.stage_table("reranked")["nDCG@10"]
    got = policy.stage_table("reranked")["nDCG@10"]
    for query in never.index:
        want = full[query] if query in expected else never[query]
        assert got[query] == pytest.approx(want, abs=1e-12), query
    assert policy.identity.key != always.identity.key
    assert policy.identity.reranker["policy"] == f"margin_below_{threshold:g}"
    assert "rerank" in policy.latency["online"]  # the policy runs in the latency pass too
    import evalkit

    # a folder holding a policy run and the run it came from: compare / decide handle both
    report = evalkit.compare(tmp_path, bootstrap=200)
    assert set(report.selective().system) == {"bm25 → minilm_l6@5 [policy=none]"}
    decision = evalkit.decide(report, p95_ms=60_000, selective=True)
    # 4 toy queries: no randomisation test over 4 queries reaches p < 0.05 (its least p is
    # 2/16), so no policy can be recommended
    assert decision.selective["decision"] == "no_policy"
    assert decision.selective["message"].startswith("Selective:")


@pytest.mark.parametrize("policy", ["learned", "feature:margin", "feature:idf_max", "always"])
def test_nested_evidence_applies_every_family_as_fitted_on_the_training_queries(policy):
    """A (policy, share) chosen on the training folds reranks about that share of the
    held-out queries; the learned policy used to rerank all of them (its cut came from a
    model fitted on the held-out fold with zeroed gains)."""
    from evalkit.analysis.selective import _apply

    rng = np.random.default_rng(0)
    n = 400
    table = pd.DataFrame(
        {"margin": rng.normal(size=n), "idf_max": rng.normal(size=n), "length": rng.normal(size=n)}
    )
    gain = np.where(table.margin < 0, 0.1, -0.1) + rng.normal(0, 0.05, n)
    test = np.zeros(n, dtype=bool)
    test[::5] = True  # one held-out fold of 80 queries
    for share in (0.2, 0.5, 0.8):
        picked = _apply(policy, share, table, gain, ~test, test)
        assert not picked[~test].any()  # only held-out queries are chosen
        held_out = picked[test].mean()
        if policy == "always":
            assert held_out == 1.0
        else:  # the training quantile lands within a few queries of the share
            assert abs(held_out - share) <= 0.1, (policy, share, held_out)
