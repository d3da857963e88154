"""decide --qps with load curves: the p95 at the offered load, measured (interpolated,
saturation refused) or simulated for --replicas N, and the fallback rule labelled."""

from __future__ import annotations

import pytest

from evalkit.analysis.decision import Budget, decide
from evalkit.errors import ConfigError
from tests.fakeruns import make_run
from tests.test_report import BASE, BETTER


def curve(points, model=None, shapes=None, batching=(100, 0.0)):
    return {
        "points": [
            {"offered_qps": q, "p95_ms": p95, "saturated": saturated}
            for q, p95, saturated in points
        ],
        "conditions": {"max_batch_pairs": batching[0], "max_wait_ms": batching[1], "seed": 0},
        "service_model": model
        or {"fixed": 100.0, "per_query": 0.0, "per_pair": 0.0, "per_token": 0.0},
        "query_shapes": shapes or [[100, 1000]],
    }


MEASURED = curve([(5, 100.0, False), (10, 200.0, False), (20, 900.0, True)])


@pytest.fixture
def runs(tmp_path):
    make_run(tmp_path, "bm25", BASE, p95_first=2.0)
    make_run(tmp_path, "ce", BASE, BETTER, reranker="ce", p95_total=90, load_curve=MEASURED)
    return tmp_path


def verdict(decision, system="bm25 → ce@100"):
    return next(c for c in decision.considered if c["system"] == system)


def test_the_p95_at_the_offered_load_is_interpolated_from_the_measured_curve(runs):
    fits = decide(runs, Budget(p95_ms=150, qps=7.5), bootstrap=200)
    assert verdict(fits)["fits"]
    legacy = "a point estimate: load.json has no per-query latencies"
    assert verdict(fits)["why"] == (
        f"fits: p95 150.0 ms at 7.5 QPS (measured, one replica) ({legacy})"
    )
    assert fits.recommendation["system"] == "bm25 → ce@100"
    out = decide(runs, Budget(p95_ms=150, qps=8), bootstrap=200)
    assert verdict(out)["why"] == (
        f"p95 160.0 ms at 8 QPS (measured, one replica) exceeds the 150 ms budget ({legacy})"
    )
    assert any("load curve" in a for a in out.assumptions)


def with_latencies(points, seed=0, n=120):
    """A measured curve whose rates carry their queries' latencies (about the given p95)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    loaded = curve([(q, p95, sat) for q, p95, sat, _ in points])
    for row, (_, _, _, scale) in zip(loaded["points"], points, strict=True):
        row["latencies_ms"] = (scale * rng.uniform(0.5, 1.05, n)).tolist()
        row["p95_ms"] = float(np.percentile(row["latencies_ms"], 95))
    return loaded


@pytest.mark.parametrize(
    ("budget", "qps", "state"),
    [
        (300.0, 5, "fits"),  # 5 QPS: p95 about 100 ms, its CI well inside 300
        (60.0, 5, "out"),  # ... and well above 60
        (None, 5, "undetermined"),  # the budget at the p95 itself: inside its CI
        (300.0, 7.5, "fits"),  # between 5 and 10 QPS: both neighbours' CIs inside 300
        (150.0, 7.5, "undetermined"),  # 5 QPS fits 150, 10 QPS (about 200) does not
    ],
)
def test_at_a_measured_rate_the_p95_is_decided_from_its_interval(tmp_path, budget, qps, state):
    from evalkit.measure.online import quantile_ci

    loaded = with_latencies([(5, 0, False, 100.0), (10, 0, False, 200.0), (20, 0, True, 900.0)])
    budget = budget or loaded["points"][0]["p95_ms"]
    make_run(tmp_path, "bm25", BASE, p95_first=2.0)
    make_run(tmp_path, "ce", BASE, BETTER, reranker="ce", p95_total=90, load_curve=loaded)
    row = verdict(decide(tmp_path, Budget(p95_ms=budget, qps=qps), bootstrap=200))
    assert row["state"] == state, row["why"]
    assert "n=120 at 5 QPS" in row["why"]
    if qps == 5:  # the interval is the order-statistics CI of that rate's latencies
        low, high = quantile_ci(loaded["points"][0]["latencies_ms"])
        assert (low <= budget <= high) == (state == "undetermined")


def test_saturation_and_rates_beyond_the_curve_do_not_fit(runs):
    saturated = decide(runs, Budget(p95_ms=5000, qps=20), bootstrap=200)
    assert verdict(saturated)["why"] == "saturates at 20 QPS (measured, one replica)"
    beyond = decide(runs, Budget(p95_ms=5000, qps=15), bootstrap=200)
    assert verdict(beyond)["why"].startswith("the load curve was measured up to 10 QPS only")


def test_replicas_are_simulated_from_the_measured_service_times(runs):
    # 100 ms per query, no batching: one replica serves 10 QPS at most
    one = decide(runs, Budget(p95_ms=5000, qps=15, replicas=1), bootstrap=200)
    assert verdict(one)["why"] == "saturates at 15 QPS (simulated, 1 replica)"
    two = decide(runs, Budget(p95_ms=5000, qps=15, replicas=2), bootstrap=200)
    assert verdict(two)["fits"] and "(simulated, 2 replicas)" in verdict(two)["why"]
    p95 = float(verdict(two)["why"].split("p95 ")[1].split(" ms")[0])
    assert 100.0 < p95 < 1000.0  # M/D/2 at 75% load: queueing, but bounded


def test_runs_without_a_curve_use_the_fallback_rule_labelled(runs):
    make_run(runs, "other", BASE, BETTER, reranker="other", p95_total=80)
    result = decide(runs, Budget(p95_ms=500, qps=5), bootstrap=200)
    assert any(a.startswith("fallback QPS rule") for a in result.assumptions)
    assert any(a.startswith("QPS rule with a load curve") for a in result.assumptions)
    assert verdict(result, "bm25 → other@100")["fits"]  # 5 x 100 <= 1000 pairs/s


def test_replicas_need_a_rate_and_sensible_values():
    with pytest.raises(ConfigError, match="--replicas needs --qps"):
        Budget(p95_ms=100, replicas=2)
    with pytest.raises(ConfigError, match="--replicas must be an integer from 1 to 1024"):
        Budget(p95_ms=100, qps=5, replicas=0)


def toy_plugin(tmp_path) -> list[str]:
    """The toy collection reranked at depth 5 by the word-overlap plugin (fast, exact)."""
    from tests.conftest import TOY

    return [
        "dataset=local",
        f"dataset.path={TOY}",
        f"cache.dir={tmp_path / 'cache'}",
        "show_progress=false",
        "reranker=python",
        "reranker.target=tests.plugin_reranker:make",
        "pipeline.depth=5",
    ]


@pytest.mark.slow  # an end-to-end evalkit-run with a load test, in a subprocess
def test_a_run_with_load_qps_writes_the_curve_and_decide_answers_from_it(tmp_path):
    import json

    from tests.test_e2e import evalkit_cli, evalkit_run

    folder = tmp_path / "results" / "load"
    evalkit_run(
        *toy_plugin(tmp_path),
        "latency.max_queries=4",
        "latency.load_qps=[20,80]",
        "latency.load_queries=40",
        "latency.max_batch_pairs=10",
        f"hydra.run.dir={folder}",
    )
    load = json.loads((folder / "load.json").read_text())
    assert [p["offered_qps"] for p in load["points"]] == [20.0, 80.0]
    assert all(p["queries"] == 40 for p in load["points"])
    assert all(b[1] <= 10 or b[0] == 1 for p in load["points"] for b in p["batches"])
    assert set(load["simulated"]) == {"1", "2", "4"}
    assert len(load["query_shapes"]) == 4 and all(s[0] <= 5 for s in load["query_shapes"])
    assert (folder / "load.png").is_file()
    decide = evalkit_cli(
        "decide", str(tmp_path / "results"), "--p95-ms", "5000", "--qps", "20", "--replicas", "2"
    )
    assert decide.returncode == 0, decide.stderr
    assert "(simulated, 2 replicas)" in decide.stdout
    assert "QPS rule with a load curve" in decide.stdout


@pytest.mark.slow  # an end-to-end run in a subprocess (the fast tier stays under 3 min)
def test_queries_a_policy_keeps_unreranked_cost_no_pairs_under_load(tmp_path):
    import json

    from tests.test_e2e import evalkit_run

    folder = tmp_path / "load"
    evalkit_run(
        *toy_plugin(tmp_path),
        "pipeline.policy=idf_max_above_1000",  # no query qualifies: nothing is reranked
        "latency.max_queries=4",
        "latency.load_qps=[50]",
        "latency.load_queries=20",
        f"hydra.run.dir={folder}",
    )
    load = json.loads((folder / "load.json").read_text())
    assert load["query_shapes"] == [[0, 0]] * 4
    assert all(b[1] == 0 for b in load["points"][0]["batches"])
