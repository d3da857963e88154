"""Sweeps a user launches, through `evalkit-run -m`, then report and decide on them.

One folder holds: the default depth 100 (BM25 alone and a cross-encoder from two model
folders), the bi-encoder second stage at two `max_length` values, a rerun of one config,
and a second dataset (toy, relevance level 2). Every value asserted is read back
independently from the run's own files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from evalkit.analysis.decision import Budget, decide
from evalkit.analysis.report import compare
from evalkit.analysis.report_folder import build_report
from evalkit.results import find_results
from tests.conftest import CRANFIELD, REPO, TOY, build_tiny_cross_encoder
from tests.test_e2e import evalkit_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, minilm_path, session_cache):
    root = tmp_path_factory.mktemp("sweep")
    models = tmp_path_factory.mktemp("models")
    ce_a = build_tiny_cross_encoder(models / "tiny-ce-a", seed=1)
    ce_b = build_tiny_cross_encoder(models / "tiny-ce-b", seed=2)
    quick = [
        f"cache.dir={session_cache}",
        "show_progress=false",
        "latency.max_queries=90",  # enough to decide a p95 (a 4-query set is timed again)
        "latency.warmup=1",
        "latency.throughput_pairs=32",
    ]
    cranfield = ["dataset=cranfield", "dataset.max_queries=40", *quick, f"hydra.sweep.dir={root}"]
    toy = [
        "dataset=local",
        f"dataset.path={TOY}",
        "dataset.relevance_level=2",
        *quick,
        f"hydra.sweep.dir={root}",
    ]
    jobs = [
        [*cranfield, "reranker=none"],  # the default depth: 100
        [*cranfield, "reranker=minilm_l6", f"reranker.model={ce_a},{ce_b}"],
        [
            *cranfield,
            "reranker=biencoder",
            f"reranker.model={minilm_path}",
            "pipeline.depth=10",
            "reranker.max_length=32,256",
        ],
        [*toy, "reranker=none,minilm_l6", f"reranker.model={ce_a}", "pipeline.depth=5"],
    ]
    for job in jobs:
        evalkit_run("-m", *job)
    # a rerun of the BM25-alone config into another folder of the same sweep
    evalkit_run(*cranfield[:-1], "reranker=none", f"hydra.run.dir={root}/rerun-of-bm25")
    return root, jobs


def metrics_of(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_every_system_is_one_row_labelled_by_what_differs(sweep):
    root, _ = sweep
    assert len(list(root.rglob("complete.json"))) == 8
    report = compare(root, bootstrap=300)
    systems = set(zip(report.table.dataset, report.table.system, strict=True))
    assert systems == {
        ("cranfield", "bm25"),
        ("cranfield", "bm25 → minilm_l6@100 [model=tiny-ce-a]"),
        ("cranfield", "bm25 → minilm_l6@100 [model=tiny-ce-b]"),
        ("cranfield", "bm25 → biencoder@10 [max_length=32]"),
        ("cranfield", "bm25 → biencoder@10 [max_length=256]"),
        ("toy", "bm25"),
        ("toy", "bm25 → minilm_l6@5"),
    }
    assert any("found in 2 folders" in note for note in report.notes)  # the rerun, once


def test_report_means_equal_each_runs_own_metrics(sweep):
    root, _ = sweep
    table = compare(root, bootstrap=300).table
    for row in table[table.measure == "nDCG@10"].itertuples():
        metrics = metrics_of(Path(row.folder))
        stage = "first_stage" if pd.isna(row.depth) else "reranked"
        assert row.mean == pytest.approx(metrics[stage]["nDCG@10"], abs=1e-12), row.system


def test_default_depth_100_reports_recall_at_depth_once(sweep):
    root, _ = sweep
    out = build_report(root, bootstrap=300)
    assert (out / "report.md").is_file()
    for result in find_results(root):
        per_query = result.per_query
        assert not per_query.duplicated(["stage", "query_id", "measure"]).any(), result.folder
    ce = next(r for r in find_results(root) if "tiny-ce-a" in str(r.config["reranker"]["model"]))
    assert list(ce.metrics["first_stage"]).count("R@100") == 1


def test_baseline_latency_is_the_bm25_alone_runs_own(sweep):
    root, _ = sweep
    table = compare(root, bootstrap=300).table
    first = table[(table.dataset == "cranfield") & (table.system == "bm25")].iloc[0]
    latency = json.loads((Path(first.folder) / "latency.json").read_text())
    assert first.p95_ms == latency["online"]["total"]["p95_ms"]
    assert "rerank" not in latency["online"]  # measured alone, not a reranked run's stage
    reranked = table[table.system == "bm25 → minilm_l6@100 [model=tiny-ce-a]"].iloc[0]
    assert reranked.baseline == "bm25" and reranked.baseline_measured_alone


def test_decide_per_dataset_and_metric_with_its_relevance_level(sweep):
    root, _ = sweep
    with pytest.raises(Exception, match="several datasets"):
        decide(root, Budget(p95_ms=60_000), bootstrap=300)
    toy = decide(root, Budget(p95_ms=60_000, metric="P@10", dataset="toy"), bootstrap=300)
    assert toy.dataset == "toy"
    assert toy.recommendation["measure"] == "P(rel=2)@10"
    cran = decide(root, Budget(p95_ms=60_000, dataset="cranfield"), bootstrap=300)
    assert cran.dataset == "cranfield" and cran.recommendation is not None
    # random tiny cross-encoders never significantly beat BM25: never recommended
    assert "minilm_l6" not in cran.recommendation["system"]


def test_decide_cli_with_dataset_and_without(sweep):
    root, _ = sweep
    command = [
        sys.executable,
        "-c",
        "from evalkit.cli import decide_main; decide_main()",
        str(root),
        "--p95-ms",
        "60000",
    ]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--dataset NAME" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    chosen = subprocess.run(
        [*command, "--dataset", "toy", "--metric", "P@10"], capture_output=True, text=True
    )
    assert chosen.returncode == 0, chosen.stderr
    written = json.loads((root / "decision.json").read_text())
    assert written["dataset"] == "toy" and written["budget"]["metric"] == "P@10"


def test_rerun_resumes_only_the_interrupted_job(sweep):
    root, jobs = sweep
    markers = sorted(root.rglob("complete.json"))
    victim = next(m.parent for m in markers if "max_length=256" in m.parent.name)
    (victim / "complete.json").unlink()  # as if killed before the marker was written
    untouched = {
        m.parent: (m.parent / "metrics.json").stat().st_mtime_ns
        for m in markers
        if m.parent != victim
    }
    assert victim not in {r.folder for r in find_results(root)}  # unfinished: not reported
    evalkit_run("-m", *jobs[2])
    assert (victim / "complete.json").is_file()
    for folder, mtime in untouched.items():
        assert (folder / "metrics.json").stat().st_mtime_ns == mtime, folder
    assert metrics_of(victim)["num_queries"] == 40


def test_cranfield_is_the_shipped_copy():
    assert CRANFIELD.is_relative_to(REPO)


def test_selective_curve_endpoints_equal_the_never_and_always_systems(sweep):
    root, _ = sweep
    out = build_report(root, bootstrap=300)
    curve = pd.read_csv(out / "selective.csv")
    table = compare(root, bootstrap=300).table
    means = table[table.measure == "nDCG@10"].set_index(["dataset", "system"])["mean"]
    for (dataset, system), points in curve.groupby(["dataset", "system"]):
        first = means[(dataset, "bm25")]
        ends = points.set_index("policy")["mean"]
        assert ends["never"] == pytest.approx(first, abs=1e-12)
        assert ends["always"] == pytest.approx(means[(dataset, system)], abs=1e-12)
        assert points["mean"].max() <= points[points.policy == "oracle"]["mean"].max() + 1e-12
    assert (out / "selective_0.png").is_file()
