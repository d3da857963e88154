"""Statistics, Pareto frontier, report and the decision rule on hand-checkable cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from evalkit.decide import decide
from evalkit.errors import DataError
from evalkit.plots import pareto_frontier
from evalkit.report import build_report, compare, load_systems
from evalkit.stats import bootstrap_ci, compare_paired, holm
from tests.fakeruns import make_run

RNG = np.random.default_rng(7)
BASE = RNG.uniform(0.1, 0.6, size=50).round(3).tolist()
BETTER = [v + 0.2 for v in BASE]  # better on every query
NOISE = (np.array(BASE) + RNG.normal(0, 0.002, size=50)).tolist()  # same quality


def test_identical_runs_have_zero_gain_and_p_one():
    result = compare_paired(BASE, BASE)
    assert (result.gain, result.p_ttest, result.p_randomization) == (0.0, 1.0, 1.0)
    assert (result.wins, result.ties, result.losses) == (0, 50, 0)


def test_better_on_every_query_is_significant():
    result = compare_paired(BASE, BETTER)
    assert result.gain == pytest.approx(0.2)
    assert (result.wins, result.ties, result.losses) == (50, 0, 0)
    assert result.p_randomization < 0.001
    assert result.gain_ci_low == pytest.approx(0.2) and result.gain_ci_high == pytest.approx(0.2)


def test_t_test_equals_scipy_on_the_same_data():
    a, b = [0.1, 0.5, 0.3, 0.9, 0.4], [0.2, 0.4, 0.6, 0.95, 0.5]
    assert compare_paired(a, b).p_ttest == pytest.approx(scipy_stats.ttest_rel(b, a).pvalue)
    # by hand: differences .1 -.1 .3 .05 .1 -> mean .09, sd .1432, t = .09/(.1432/sqrt 5)
    diffs = np.array(b) - np.array(a)
    t = diffs.mean() / (diffs.std(ddof=1) / np.sqrt(5))
    assert t == pytest.approx(1.4055, abs=1e-3)


def test_randomization_test_small_case_is_exact():
    # 3 queries, all gains +1: of the 8 sign flips only all-plus and all-minus reach |mean| 1
    result = compare_paired([0, 0, 0], [1, 1, 1], permutations=10_000)
    assert result.p_randomization == pytest.approx(2 / 8)


def test_holm_by_hand():
    # sorted .01 .03 .04 -> .01*3=.03, .03*2=.06, max(.06, .04*1)=.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_bootstrap_ci_brackets_the_mean():
    low, high = bootstrap_ci(BASE)
    assert low < np.mean(BASE) < high
    assert bootstrap_ci([0.3] * 10) == (0.3, 0.3)


def test_pareto_frontier_on_a_hand_made_set():
    latency = [10, 20, 30, 15, 20, 40]
    quality = [0.30, 0.50, 0.40, 0.20, 0.45, 0.55]
    # (15,.2) dominated by (10,.3); (30,.4) and (20,.45) by (20,.5)
    assert pareto_frontier(latency, quality) == [0, 1, 5]


@pytest.fixture
def sweep(tmp_path):
    make_run(tmp_path, "bm25-ce-big", BASE, BETTER, reranker="big", p95_total=300)
    make_run(tmp_path, "bm25-ce-small", BASE, NOISE, reranker="small", p95_total=40, depth=10)
    (tmp_path / "half-written").mkdir()
    (tmp_path / "half-written" / "metrics.json").write_text("{}")  # no complete.json
    return tmp_path


def test_report_table_and_files(sweep):
    out = build_report(sweep, bootstrap=200)
    for name in (
        "report.md",
        "report.html",
        "report.csv",
        "report.parquet",
        "quality_vs_latency.png",
        "quality_vs_latency.svg",
        "per_query_difference.png",
    ):
        assert (out / name).is_file(), name
    table = compare(load_systems(sweep), "nDCG@10", bootstrap=200).table
    assert sorted(table.system) == ["bm25", "bm25 → big@100", "bm25 → small@10"]
    big = table[table.system == "bm25 → big@100"].iloc[0]
    assert big.baseline == "bm25" and big.wins == 50 and big.gain == pytest.approx(0.2)
    assert big.p_randomization_holm <= 2 * big.p_randomization
    first = table[table.system == "bm25"].iloc[0]
    assert first.p95_ms == 5.0 and np.isnan(first.gain)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "half-written" not in html


def test_decide_picks_the_best_that_fits(sweep):
    result = decide(sweep, p95_ms=500, bootstrap=200)
    assert result["decision"] == "use"
    assert result["recommendation"]["system"] == "bm25 → big@100"
    assert result["runner_up"]["why_not"].startswith("lower nDCG@10")


def test_decide_when_nothing_fits(sweep):
    result = decide(sweep, p95_ms=1, bootstrap=200)
    assert result["decision"] == "nothing_fits"
    assert "fastest measured is bm25 at p95 5.0 ms" in result["message"]


def test_decide_skips_reranking_when_the_gain_is_not_significant(sweep):
    # under 100 ms only the small reranker (no real gain) and BM25 fit
    result = decide(sweep, p95_ms=100, bootstrap=200)
    assert result["decision"] == "skip_reranking"
    assert result["recommendation"]["system"] == "bm25"
    assert "not significant" in result["message"] or "below" in result["message"]


def test_decide_min_gain_can_reject_a_significant_reranker(sweep):
    result = decide(sweep, p95_ms=500, min_gain=0.5, bootstrap=200)
    assert result["decision"] == "skip_reranking"
    assert "below --min-gain 0.5" in result["message"]


def test_decide_qps_bound_binds(sweep):
    # big reranker: 1000 pairs/s / depth 100 = 10 QPS sustainable; 20 QPS does not fit
    result = decide(sweep, p95_ms=500, qps=20, bootstrap=200)
    big = next(c for c in result["considered"] if c["system"] == "bm25 → big@100")
    assert not big["fits"] and "2000 pairs/s exceeds the measured 1000" in big["why"]
    assert (
        decide(sweep, p95_ms=500, qps=5, bootstrap=200)["recommendation"]["system"]
        == "bm25 → big@100"
    )


def test_decide_warns_about_mixed_hardware(tmp_path):
    make_run(tmp_path, "cpu", BASE, BETTER, reranker="a")
    make_run(tmp_path, "gpu", BASE, BETTER, reranker="b", gpu="NVIDIA H100")
    result = decide(tmp_path, p95_ms=1000, bootstrap=200)
    assert any("different hardware" in w for w in result["warnings"])


def test_decide_and_report_refuse_empty_or_unknown(tmp_path):
    with pytest.raises(DataError, match="no finished runs"):
        decide(tmp_path, p95_ms=10)
    make_run(tmp_path, "one", BASE, BETTER)
    with pytest.raises(DataError, match="measure 'MAP@5' was not computed"):
        decide(tmp_path, p95_ms=10, metric="MAP@5")


def test_decide_cli_writes_json(sweep, capsys):
    from evalkit.cli import decide_main

    decide_main([str(sweep), "--p95-ms", "500"])
    written = json.loads((sweep / "decision.json").read_text())
    assert written["decision"] == "use"
    assert "Rerank: use bm25 → big@100" in capsys.readouterr().out
