"""Statistics, Pareto frontier, report and the decision rule on hand-checkable cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from evalkit.analysis.decision import Budget, decide
from evalkit.analysis.plots import pareto_frontier
from evalkit.analysis.render import format_cell
from evalkit.analysis.report import compare
from evalkit.analysis.report_folder import build_report
from evalkit.analysis.stats import bootstrap_ci, compare_paired, holm
from evalkit.analysis.systems import label_systems
from evalkit.errors import ConfigError, DataError
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
    make_run(tmp_path, "bm25-alone", BASE, p95_first=2.0)
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
        "latency.csv",
        "quality_vs_latency.png",
        "quality_vs_latency.svg",
        "per_query_difference.png",
    ):
        assert (out / name).is_file(), name
    table = compare(sweep, "nDCG@10", bootstrap=200).table
    assert sorted(table.system) == ["bm25", "bm25 → big@100", "bm25 → small@10"]
    big = table[table.system == "bm25 → big@100"].iloc[0]
    assert big.baseline == "bm25" and big.wins == 50 and big.gain == pytest.approx(0.2)
    assert big.p_randomization_holm <= 2 * big.p_randomization
    first = table[table.system == "bm25"].iloc[0]
    assert np.isnan(first.gain)
    html = (out / "report.html").read_text()
    assert "data:image/svg+xml;base64," in html and "half-written" not in html


def test_baseline_latency_comes_from_the_bm25_alone_run(sweep):
    # the reranked runs' own first stages took 5 ms; the run without a reranker took 2 ms
    report = compare(sweep, bootstrap=200)
    first = report.table[report.table.system == "bm25"].iloc[0]
    assert first.p95_ms == 2.0 and first.folder.endswith("bm25-alone")
    big = report.table[report.table.system == "bm25 → big@100"].iloc[0]
    assert big.baseline_folder.endswith("bm25-alone") and big.p95_ms == 300.0


def test_without_a_first_stage_run_the_reranked_runs_own_first_stage_is_the_baseline(tmp_path):
    make_run(tmp_path, "only-reranked", BASE, BETTER, p95_first=7.0, p95_total=70.0)
    row = compare(tmp_path, bootstrap=200).table.set_index("system").loc["bm25"]
    assert row.p95_ms == 7.0 and row.latency_source == "first-stage stages of a reranked run"


def test_systems_differing_in_one_setting_are_two_rows_labelled_by_it(tmp_path):
    make_run(tmp_path, "a", BASE, BETTER, reranker="bi", reranker_settings={"max_length": 32})
    make_run(tmp_path, "b", BASE, NOISE, reranker="bi", reranker_settings={"max_length": 256})
    table = compare(tmp_path, bootstrap=200).table
    assert sorted(set(table.system)) == [
        "bm25",
        "bm25 → bi@100 [max_length=256]",
        "bm25 → bi@100 [max_length=32]",
    ]
    means = table.set_index("system")["mean"]
    assert means["bm25 → bi@100 [max_length=32]"] == pytest.approx(np.mean(BETTER))
    assert means["bm25 → bi@100 [max_length=256]"] == pytest.approx(np.mean(NOISE))


def test_two_model_folders_are_two_systems(tmp_path):
    for name, values in (("m1", BETTER), ("m2", NOISE)):
        make_run(
            tmp_path,
            name,
            BASE,
            values,
            reranker="ce",
            reranker_settings={"model": f"/models/{name}", "fingerprint": f"local:{name}"},
        )
    labels = sorted(set(compare(tmp_path, bootstrap=200).table.system))
    assert labels == ["bm25", "bm25 → ce@100 [model=m1]", "bm25 → ce@100 [model=m2]"]


def test_a_rerun_of_one_system_is_counted_once_and_named(tmp_path):
    make_run(tmp_path, "first-try", BASE, BETTER)
    make_run(tmp_path, "second-try", BASE, BETTER)
    report = compare(tmp_path, bootstrap=200)
    assert sorted(set(report.table.system)) == ["bm25", "bm25 → ce@100"]
    assert len(report.table[report.table.system == "bm25 → ce@100"]) == 1
    assert any("found in 2 folders" in note and "second-try" in note for note in report.notes)


def test_labels_show_only_settings_that_differ():
    from tests.fakeruns import make_identity

    class Fake:
        def __init__(self, identity):
            self.identity, self.key, self.dataset = identity, identity.key, "toy"

    a = Fake(make_identity(reranker_settings={"max_length": 32, "dtype": "fp32"}))
    b = Fake(make_identity(reranker_settings={"max_length": 64, "dtype": "fp32"}))
    labels = label_systems([a, b])
    assert labels[a.key] == "bm25 → ce@100 [max_length=32]"
    assert labels[b.key] == "bm25 → ce@100 [max_length=64]"


def test_cells_are_formatted_by_kind():
    assert format_cell("wins", 115.0) == "115"
    assert format_cell("p95_ms", 5.1312) == "5.1" and format_cell("p95_ms", 2617.24) == "2,617.2"
    assert format_cell("gain", 0.0349) == "+0.0349"
    assert format_cell("p_randomization_holm", 0.010234) == "0.0102"
    assert format_cell("p_randomization_holm", 1.0) == "1.00"  # not a bare "1"
    assert format_cell("mean", float("nan")) == "—"


def test_all_measures_are_in_natural_order(tmp_path):
    make_run(tmp_path, "p5", BASE, BETTER, measure="P@5")
    report = compare(tmp_path, metric="P@5", bootstrap=200)
    report.table = pd.concat(
        [report.table.assign(measure=m) for m in ("P@10", "P@5", "P@20", "AP")], ignore_index=True
    )
    assert list(report.means().columns[2:]) == ["AP", "P@5", "P@10", "P@20"]


def test_cost_only_systems_stay_out_of_the_headline_but_keep_their_latency(tmp_path):
    make_run(tmp_path, "real", BASE, BETTER)
    make_run(tmp_path, "cost", BASE, reranker="big", random_weights=True, p95_total=900.0)
    report = compare(tmp_path, bootstrap=200)
    assert "bm25 → big@100" not in set(report.headline().system)
    latency = report.latency_table().set_index("system")
    assert latency.loc["bm25 → big@100", "p95_ms"] == 900.0
    assert not latency.loc["bm25 → big@100", "quality_meaningful"]


def test_metric_is_matched_with_the_datasets_relevance_level(tmp_path):
    make_run(tmp_path, "dl", BASE, BETTER, measure="P(rel=2)@10", relevance_level=2)
    report = compare(tmp_path, metric="P@10", bootstrap=200)
    assert set(report.headline().measure) == {"P(rel=2)@10"}
    decision = decide(tmp_path, Budget(p95_ms=500, metric="P@10"), bootstrap=200)
    assert decision.recommendation["measure"] == "P(rel=2)@10"


def test_decide_picks_the_best_that_fits(sweep):
    result = decide(sweep, Budget(p95_ms=500), bootstrap=200)
    assert result.decision == "rerank"
    assert result.recommendation["system"] == "bm25 → big@100"
    assert result.runner_up["why_not"].startswith("lower nDCG@10")
    assert result.to_json()["budget"]["p95_ms"] == 500.0


def test_decide_when_nothing_fits(sweep):
    result = decide(sweep, Budget(p95_ms=1), bootstrap=200)
    assert result.decision == "nothing_fits"
    assert "fastest measured is bm25 at p95 2.0 ms" in result.message


def test_decide_skips_reranking_when_the_gain_is_not_significant(sweep):
    # under 100 ms only the small reranker (no real gain) and BM25 fit
    result = decide(sweep, Budget(p95_ms=100), bootstrap=200)
    assert result.decision == "skip_reranking"
    assert result.recommendation["system"] == "bm25"
    assert "not significant" in result.message
    assert result.runner_up["system"] == "bm25 → small@10"


def test_decide_min_gain_can_reject_a_significant_reranker(sweep):
    result = decide(sweep, Budget(p95_ms=500, min_gain=0.5), bootstrap=200)
    assert result.decision == "skip_reranking"
    assert "below --min-gain 0.5" in result.message


def test_decide_qps_bound_binds_and_states_its_assumption(sweep):
    # big reranker: 1000 pairs/s / depth 100 = 10 QPS sustainable; 20 QPS does not fit
    result = decide(sweep, Budget(p95_ms=500, qps=20), bootstrap=200)
    big = next(c for c in result.considered if c["system"] == "bm25 → big@100")
    assert not big["fits"] and "2,000 pairs/s exceeds the measured 1,000.0" in big["why"]
    assert any("perfectly" in a for a in result.assumptions)
    fits = decide(sweep, Budget(p95_ms=500, qps=5), bootstrap=200)
    assert fits.recommendation["system"] == "bm25 → big@100"
    # one query at a time the big system runs 1000/300 = 3.33 QPS < 5: flagged, 2 in flight
    assert any("3.33 QPS, below the asked 5" in w and "at least 2" in w for w in fits.warnings)


def test_decide_warns_about_mixed_hardware(tmp_path):
    make_run(tmp_path, "cpu", BASE, BETTER, reranker="a")
    make_run(tmp_path, "gpu", BASE, BETTER, reranker="b", gpu="NVIDIA H100")
    result = decide(tmp_path, Budget(p95_ms=1000), bootstrap=200)
    assert any("different hardware" in w for w in result.warnings)


def test_decide_for_one_dataset_of_several(tmp_path):
    make_run(tmp_path, "a", BASE, BETTER, dataset="alpha")
    make_run(tmp_path, "b", BASE, NOISE, dataset="beta")
    with pytest.raises(DataError, match="several datasets"):
        decide(tmp_path, Budget(p95_ms=500), bootstrap=200)
    alpha = decide(tmp_path, Budget(p95_ms=500, dataset="alpha"), bootstrap=200)
    beta = decide(tmp_path, Budget(p95_ms=500, dataset="beta"), bootstrap=200)
    assert (alpha.dataset, alpha.decision) == ("alpha", "rerank")
    assert (beta.dataset, beta.decision) == ("beta", "skip_reranking")
    with pytest.raises(DataError, match="no runs on dataset 'gamma'"):
        decide(tmp_path, Budget(p95_ms=500, dataset="gamma"), bootstrap=200)


def test_decide_and_report_refuse_empty_or_unknown(tmp_path):
    with pytest.raises(DataError, match="no finished runs"):
        decide(tmp_path, Budget(p95_ms=10))
    make_run(tmp_path, "one", BASE, BETTER)
    with pytest.raises(DataError, match="measure 'MAP@5'"):
        decide(tmp_path, Budget(p95_ms=10, metric="MAP@5"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p95_ms": 0},
        {"p95_ms": float("nan")},
        {"p95_ms": float("inf")},
        {"p95_ms": 5, "qps": -1},
        {"p95_ms": 5, "alpha": 1.5},
        {"p95_ms": 5, "min_gain": float("nan")},
    ],
)
def test_budget_refuses_values_out_of_range(kwargs):
    with pytest.raises(ConfigError):
        Budget(**kwargs)


def test_decide_cli_writes_json_and_passes_dataset_on(tmp_path, capsys):
    from evalkit.cli import decide_main

    make_run(tmp_path, "a", BASE, BETTER, dataset="alpha")
    make_run(tmp_path, "b", BASE, NOISE, dataset="beta")
    decide_main([str(tmp_path), "--p95-ms", "500", "--dataset", "alpha"])
    written = json.loads((tmp_path / "decision.json").read_text())
    assert written["decision"] == "rerank" and written["dataset"] == "alpha"
    assert "Rerank: use bm25 → ce@100" in capsys.readouterr().out


def test_decide_on_a_report_uses_the_budgets_metric(tmp_path):
    make_run(tmp_path, "a", BASE, BETTER, measure="P@10")
    report = compare(tmp_path, metric="P@10", bootstrap=200)
    decision = decide(report, Budget(p95_ms=500, metric="P@10"), bootstrap=200)
    assert decision.recommendation["measure"] == "P@10"
    with pytest.raises(DataError, match="measure 'nDCG@10'"):
        decide(report, Budget(p95_ms=500, metric="nDCG@10"), bootstrap=200)
