"""A real sweep on Cranfield through `evalkit-run -m`, then report, decide and resume."""

from __future__ import annotations

import json

import pytest

from evalkit.decide import decide
from evalkit.report import build_report, load_systems
from tests.conftest import cranfield_overrides
from tests.test_e2e import evalkit_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, minilm_path, tiny_cross_encoder, session_cache):
    root = tmp_path_factory.mktemp("sweep")
    common = [*cranfield_overrides(session_cache), f"hydra.sweep.dir={root}"]
    jobs = [
        ["reranker=none"],
        ["reranker=biencoder", f"reranker.model={minilm_path}", "pipeline.depth=10,30"],
        ["reranker=minilm_l6", f"reranker.model={tiny_cross_encoder}", "pipeline.depth=10,30"],
    ]
    for overrides in jobs:
        evalkit_run("-m", *common, *overrides)
    return root, common, jobs


def test_sweep_writes_one_complete_folder_per_configuration(sweep):
    root, _, _ = sweep
    assert len(list(root.rglob("complete.json"))) == 5
    names = sorted(s.name for s in load_systems(root))
    assert names == [
        "bm25",
        "bm25 → biencoder@10",
        "bm25 → biencoder@30",
        "bm25 → minilm_l6@10",
        "bm25 → minilm_l6@30",
    ]


def test_report_and_decide_on_the_real_sweep(sweep):
    root, _, _ = sweep
    out = build_report(root, bootstrap=300)
    text = (out / "report.md").read_text()
    assert "bm25 → biencoder@30" in text and "quality_vs_depth.png" in text
    decision = decide(root, p95_ms=10_000, bootstrap=300)
    assert decision["decision"] in {"use", "skip_reranking"}
    assert decision["recommendation"]["p95_ms"] <= 10_000
    # the random tiny cross-encoder cannot significantly beat BM25: never recommended
    assert "minilm_l6" not in decision["recommendation"]["system"]
    assert decide(root, p95_ms=0.001, bootstrap=300)["decision"] == "nothing_fits"


def test_rerun_resumes_only_the_interrupted_job(sweep):
    root, common, jobs = sweep
    markers = sorted(root.rglob("complete.json"))
    configs = {m.parent: (m.parent / "config.yaml").read_text() for m in markers}
    victim = next(
        f for f, text in configs.items() if "name: minilm_l6" in text and "depth: 30" in text
    )
    (victim / "complete.json").unlink()  # as if killed before the marker was written
    untouched = {
        m.parent: (m.parent / "metrics.json").stat().st_mtime_ns
        for m in markers
        if m.parent != victim
    }
    assert victim not in {s.folder for s in load_systems(root)}  # incomplete: not reported
    evalkit_run("-m", *common, *jobs[2])
    assert (victim / "complete.json").is_file()
    for folder, mtime in untouched.items():
        assert (folder / "metrics.json").stat().st_mtime_ns == mtime, folder
    assert json.loads((victim / "metrics.json").read_text())["num_queries"] == 225
