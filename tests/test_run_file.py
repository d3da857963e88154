"""First stage from a TREC run file: the same numbers as the engine that wrote it, clear
errors for broken files, counted unknown ids, and latency that is never taken as zero."""

from __future__ import annotations

import pytest

from evalkit.errors import DataError
from evalkit.runner import run_experiment
from tests.conftest import TOY, compose
from tests.test_e2e import evalkit_run


def overrides(tmp_path, *extra):
    return [
        "dataset=local",
        f"dataset.path={TOY}",
        f"cache.dir={tmp_path / 'cache'}",
        "show_progress=false",
        "latency.max_queries=4",
        "latency.warmup=0",
        "pipeline.depth=5",
        *extra,
    ]


def test_a_bm25_run_fed_back_gives_the_same_metrics(tmp_path, tiny_cross_encoder):
    rerank = ["reranker=minilm_l6", f"reranker.model={tiny_cross_encoder}"]
    bm25 = run_experiment(compose(overrides(tmp_path, *rerank)), tmp_path / "bm25")
    again = run_experiment(
        compose(
            overrides(
                tmp_path,
                *rerank,
                "retriever=run_file",
                f"retriever.path={tmp_path / 'bm25' / 'run.first_stage.trec'}",
            )
        ),
        tmp_path / "file",
    )
    assert again.metrics["first_stage"] == bm25.metrics["first_stage"]
    assert again.metrics["reranked"] == bm25.metrics["reranked"]
    assert again.metrics["data_warnings"] == bm25.metrics["data_warnings"]


def test_unknown_documents_and_queries_are_counted(tmp_path):
    run = tmp_path / "run.trec"
    run.write_text(
        "q1 Q0 d1 1 3.0 es\nq1 Q0 nowhere 2 2.0 es\nq9 Q0 d2 1 1.0 es\nq2 Q0 d2 1 5.0 es\n"
    )
    result = run_experiment(
        compose(
            overrides(tmp_path, "reranker=none", "retriever=run_file", f"retriever.path={run}")
        ),
        tmp_path / "out",
    )
    warnings = result.metrics["data_warnings"]
    assert warnings["run_file_documents_without_text"] == 1  # kept: it counts as retrieved
    assert warnings["run_file_queries_not_in_dataset"] == 1  # q9
    assert warnings["run_file_queries_without_candidates"] == 2  # q3, q4 score 0
    assert result.metrics["num_queries"] == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1 Q0 d1 1 3.0\n", "run.trec:1"),
        ("q1 Q0 d1 1 3.0 es\nq1 Q0 d2 2 high es\n", "score 'high' is not a finite number (/"),
        ("q1 Q0 d1 1 3.0 es\nq1 Q0 d1 2 2.0 es\n", "lists document 'd1' twice"),
        ("", "holds no lines"),
    ],
)
def test_broken_run_files_are_one_line_errors(tmp_path, content, message):
    run = tmp_path / "run.trec"
    run.write_text(content)
    result = evalkit_run(
        *overrides(tmp_path, "reranker=none", "retriever=run_file", f"retriever.path={run}"),
        f"hydra.run.dir={tmp_path}/out",
        check=False,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr


def test_missing_run_file_and_missing_path_are_refused(tmp_path):
    with pytest.raises(DataError, match="run file does not exist"):
        run_experiment(
            compose(overrides(tmp_path, "retriever=run_file", "retriever.path=/nope.trec")),
            tmp_path / "x",
        )
    from evalkit.config import validate
    from evalkit.errors import ConfigError

    with pytest.raises(ConfigError, match="retriever=run_file needs a run file"):
        validate(compose(overrides(tmp_path, "retriever=run_file")))


def test_latency_of_a_run_file_is_unknown_unless_given(tmp_path, tiny_cross_encoder):
    import evalkit

    bm25 = run_experiment(compose(overrides(tmp_path, "reranker=none")), tmp_path / "bm25")
    path = bm25.folder / "run.first_stage.trec"
    common = [
        "retriever=run_file",
        f"retriever.path={path}",
        "reranker=minilm_l6",
        f"reranker.model={tiny_cross_encoder}",
    ]
    unknown = run_experiment(compose(overrides(tmp_path, *common)), tmp_path / "a")
    given = run_experiment(
        compose(overrides(tmp_path, *common, "retriever.p95_ms=40")), tmp_path / "b"
    )
    first, two = unknown.systems()
    assert first.latency.p95_ms is None and two.latency.p95_ms is None
    assert "unknown" in two.latency.source
    rerank = given.latency["online"]["per_query_ms"]["rerank"]
    _, two_given = given.systems()
    assert two_given.latency.samples == pytest.approx([ms + 40 for ms in rerank])
    decision = evalkit.decide(tmp_path / "a", p95_ms=1e9)
    assert all(not c["fits"] and c["why"] == "no latency measured" for c in decision.considered)


def test_a_reranker_from_user_code_runs_through_evalkit_run(tmp_path):
    import json

    from evalkit.trec import read_trec_run

    folder = tmp_path / "plugin"
    evalkit_run(
        *overrides(tmp_path, "reranker=python", "reranker.target=tests.plugin_reranker:make"),
        f"hydra.run.dir={folder}",
    )
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["identity"]["reranker"]["fingerprint"] == "word-overlap-v1"
    reranked = read_trec_run(folder / "run.reranked.trec")
    # q3 "flutter at supersonic speed": d10 "Panels panel flutter at supersonic speed" shares
    # 4 words (flutter, at, supersonic, speed), more than any other toy document
    top = reranked[reranked.query_id == "q3"].sort_values("score", ascending=False).iloc[0]
    assert (top.doc_id, top.score) == ("d10", 4.0)


def test_a_target_that_is_not_a_reranker_is_refused(tmp_path):
    result = evalkit_run(
        *overrides(tmp_path, "reranker=python", "reranker.target=tests.plugin_reranker:broken"),
        f"hydra.run.dir={tmp_path}/x",
        check=False,
    )
    assert result.returncode == 2 and "returned a object without" in result.stderr
