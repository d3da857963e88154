"""The report a person reads: the verdict first, a short headline, notebook and paper
outputs, run-file comparison, and a CLI that helps (the browser test is test_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import evalkit
from evalkit.analysis.budget import Budget
from evalkit.analysis.decision import decide
from evalkit.analysis.headline import compact_headline
from evalkit.analysis.report import compare
from evalkit.analysis.report_folder import build_report
from evalkit.analysis.stats import compare_paired, holm
from evalkit.config.compose import precheck
from evalkit.errors import ConfigError
from evalkit.measure_names import canonical_name
from tests.fakeruns import make_run

TREC = Path(__file__).parent / "data" / "trec_eval"


@pytest.fixture
def sweep(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    first = rng.uniform(0, 1, 40).round(3)
    better = np.clip(first + rng.normal(0.05, 0.1, 40), 0, 1).round(3)
    make_run(tmp_path, "bm25", first.tolist(), None, p95_total=5)
    make_run(tmp_path, "ce", first.tolist(), better.tolist(), p95_total=80)
    return tmp_path


def test_the_report_opens_with_the_verdict_under_a_given_budget(sweep):
    out = build_report(sweep, bootstrap=300, budget=Budget(p95_ms=100))
    markdown = (out / "report.md").read_text()
    sections = re.findall(r"^## (.+)$", markdown, flags=re.M)
    assert sections[:2] == ["Verdict", "Headline"]
    verdict = markdown.split("## Verdict")[1].split("## Headline")[0]
    assert "Rerank" in verdict and "Budget: p95 ≤ 100.0 ms" in verdict
    report = compare(sweep, bootstrap=300)
    row = report.headline().iloc[0]
    assert f"gain +{row.gain:.4f} [+{row.gain_ci_low:.4f}, +{row.gain_ci_high:.4f}]" in verdict
    assert "p95 80.0 [80.0, 80.0] ms from 100 timed queries" in verdict
    html = (out / "report.html").read_text()
    assert html.index('id="verdict"') < html.index("<h2>Headline</h2>")


def test_a_saved_decision_json_is_the_verdict_and_a_stale_one_is_not(sweep, caplog):
    decision = decide(sweep, Budget(p95_ms=50))  # the reranker's 80 ms does not fit
    (sweep / "decision.json").write_text(__import__("json").dumps(decision.to_json()))
    out = build_report(sweep, bootstrap=300)
    markdown = (out / "report.md").read_text()
    assert markdown.split("## ")[1].startswith("Verdict")
    assert decision.message in markdown and "from decision.json" in markdown
    other = decision.to_json() | {"dataset": "another-collection"}
    (sweep / "decision.json").write_text(__import__("json").dumps(other))
    markdown = (build_report(sweep, bootstrap=300) / "report.md").read_text()
    assert (
        "## Verdict" not in markdown and "decision.json is about another-collection" in caplog.text
    )


def test_the_latency_table_carries_each_systems_verdict_against_the_budget(sweep):
    """With a decision, the latency table has a verdict column: the decision's own state
    per system, which is p95_verdict over that system's timed queries."""
    from evalkit.measure.online import p95_verdict

    report = compare(sweep, bootstrap=300)
    assert "verdict" not in report.latency_table()  # no budget, no verdict
    for budget in (50.0, 500.0):
        report.verdict = decide(report, Budget(p95_ms=budget)).to_json()
        table = report.latency_table().set_index("system")
        for system in report.systems:
            want = p95_verdict(system.latency.samples, budget)
            assert table.loc[report.labels[system.key], "verdict"] == want
    assert set(table.verdict) == {"fits"}  # 500 ms: both fit; at 50 the reranker did not
    markdown = build_report(sweep, bootstrap=300, budget=Budget(p95_ms=50)) / "report.md"
    latency = markdown.read_text().split("## Latency")[1].splitlines()
    header = next(line for line in latency if line.startswith("| dataset"))
    assert "| verdict |" in header
    assert sum(f"| {v} |" in " ".join(latency) for v in ("fits", "out", "undetermined")) >= 2


def test_the_headline_is_short_and_marks_the_best_of_each_column(sweep):
    report = compare(sweep, bootstrap=300)
    table = compact_headline(report)
    assert list(table.columns) == [
        "system",
        "nDCG@10 [95% CI]",
        "gain [95% CI]",
        "p (Holm)",
        "p95 ms [95% CI]",
        "QPS",
    ]
    best = dict((column, row) for row, column in table.attrs["best"])
    reranked = list(table.system).index("bm25 → ce@100")
    assert best["nDCG@10 [95% CI]"] == reranked and best["p95 ms [95% CI]"] == 1 - reranked
    markdown = report.to_markdown()
    assert "**" in markdown and markdown.count("\n") == 3  # header, rule, two systems


def test_latex_table_is_booktabs_with_the_best_bold_and_significance_marked(sweep):
    report = compare(sweep, bootstrap=300)
    latex = report.to_latex()
    assert latex.startswith("\\begin{table}") and "\\toprule" in latex and "\\bottomrule" in latex
    reranked = next(line for line in latex.splitlines() if line.startswith("bm25 $\\to$ ce"))
    row = report.headline().iloc[0]
    assert f"\\textbf{{{row['mean']:.4f}}}" in reranked
    assert row.p_randomization_holm < 0.05 and "$^{\\dagger}$" in reranked


def test_notebook_views_are_short_and_carry_the_verdict(sweep):
    report = compare(sweep, bootstrap=300)
    assert "<table>" in report._repr_html_() and len(repr(report)) < 200
    decision = decide(report, Budget(p95_ms=100))
    view = decision._repr_html_()
    assert decision.message in view and "Chosen: <b>bm25 → ce@100</b>" in view
    [result] = [r for r in evalkit.load(sweep) if r.reranked]
    assert "reranked" in result._repr_html_() and "p95 80.0 ms" in result._repr_html_()


def test_compare_runs_scores_run_files_as_trec_eval_and_tests_every_pair():
    """nDCG@10 of results.trunc is trec_eval's own 0.1717 (out.test.aqc, -c)."""
    runs = {"full": TREC / "results.test", "trunc": TREC / "results.trunc"}
    report = evalkit.compare_runs(runs, TREC / "qrels.test", all_pairs=True, bootstrap=300)
    rows = report.headline().set_index("system")
    assert round(rows.loc["trunc", "mean"], 4) == 0.1717
    assert rows.loc["trunc", "baseline"] == "full"
    [pair] = report.pairs.to_dict("records")
    full, trunc = (s for s in report.systems)
    common = full.per_query.index.intersection(trunc.per_query.index)
    test = compare_paired(
        full.per_query.loc[common, "nDCG@10"], trunc.per_query.loc[common, "nDCG@10"], 300
    )
    assert (
        pair["gain"] == pytest.approx(test.gain)
        and pair["p_randomization_holm"] == holm([test.p_randomization])[0]
    )
    with pytest.raises(Exception, match="baseline 'nope' is not one of the runs"):
        evalkit.compare_runs(runs, TREC / "qrels.test", baseline="nope")
    # nothing was timed: no latency columns, in the headline or the LaTeX table
    assert list(compact_headline(report).columns) == [
        "system",
        "nDCG@10 [95% CI]",
        "gain [95% CI]",
        "p (Holm)",
    ]
    latex = report.to_latex()
    assert r"System & nDCG@10 & Gain & p (Holm) \\" in latex and "p95" not in latex
    assert r"trunc & 0.1717 & " in latex


def test_compare_runs_holm_over_three_pairs():
    runs = {
        "full": TREC / "results.test",
        "trunc": TREC / "results.trunc",
        "again": TREC / "results.test",
    }
    report = evalkit.compare_runs(runs, TREC / "qrels.test", all_pairs=True, bootstrap=300)
    assert len(report.pairs) == 3
    assert report.pairs.p_randomization_holm.tolist() == holm(report.pairs.p_randomization.tolist())


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("ndcg@10", "nDCG@10"),
        ("ndcg_cut_10", "nDCG@10"),
        ("P_10", "P@10"),
        ("p@10", "P@10"),
        ("mrr@10", "RR@10"),
        ("map", "AP"),
        ("recall_100", "R@100"),
        ("nDCG@10", "nDCG@10"),
        ("P(rel=2)@10", "P(rel=2)@10"),
    ],
)
def test_measure_names_as_users_type_them(typed, canonical):
    assert canonical_name(typed) == canonical


def test_the_report_takes_trec_eval_and_lower_case_measure_names(sweep):
    for name in ("ndcg@10", "ndcg_cut_10"):
        assert compare(sweep, name, bootstrap=300).metric == "nDCG@10"


def test_a_misspelled_preset_and_a_sweep_preset_without_m_are_refused():
    with pytest.raises(ConfigError, match=r"unknown preset 'quickstrat'.*did you mean quickstart"):
        precheck(["experiments=quickstrat"])
    with pytest.raises(ConfigError, match=r"sweep preset.*evalkit-run -m experiments=quickstart"):
        precheck(["experiments=quickstart"])


def test_run_help_is_evalkits_own_and_lists_groups_not_result_folders(tmp_path, monkeypatch):
    from evalkit.cli_help import run_help

    (tmp_path / "results" / "runs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    text = run_help()
    assert "experiments  beir_small, depth_sweep, first_stage, quickstart, rerankers" in text
    assert "reranker " in text and "minilm_l6_costonly" in text
    assert "runs" not in re.findall(r"^  (\w+) ", text, flags=re.M)


def test_the_selective_plot_shows_the_recommended_system_not_the_highest_oracle():
    import pandas as pd

    from evalkit.analysis.plots import _selective_system

    group = pd.DataFrame(
        {
            "system": ["a", "a", "b", "b"],
            "policy": ["always", "oracle", "always", "oracle"],
            "mean": [0.40, 0.60, 0.45, 0.50],  # a has the higher oracle, b the better always
        }
    )

    class Fake:
        verdict = None

    assert _selective_system(Fake(), "d", group) == "b"  # not the oracle's "a"
    Fake.verdict = {"dataset": "d", "recommendation": {"system": "a"}, "selective": None}
    assert _selective_system(Fake(), "d", group) == "a"  # the decision's choice
    Fake.verdict = {"dataset": "d", "selective": {"system": "b"}, "recommendation": {}}
    assert _selective_system(Fake(), "d", group) == "b"
    Fake.verdict = {"dataset": "other", "recommendation": {"system": "a"}}
    assert _selective_system(Fake(), "d", group) == "b"  # a decision about another dataset
