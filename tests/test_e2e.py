"""End to end on Cranfield through the real CLI and the runner: result folder contract."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from evalkit.measures import DEFAULT_MEASURES
from evalkit.runner import run_experiment
from evalkit.trec import read_trec_run
from tests.conftest import compose, cranfield_overrides
from tests.test_measures import pytrec_reference

RESULT_FILES = {
    "config.yaml",
    "metrics.json",
    "per_query.parquet",
    "run.first_stage.trec",
    "run.reranked.trec",
    "latency.json",
    "env.json",
    "complete.json",
}


def evalkit_run(*overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from evalkit.cli import run_main; run_main()", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


def evalkit_cli(script: str, *args: str) -> subprocess.CompletedProcess:
    """``evalkit-report`` / ``evalkit-decide`` as a user runs them, in a fresh interpreter."""
    code = f"from evalkit.cli import {script}_main; {script}_main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )


def bm25_to_tiny_ce(cache, model, *extra: str) -> list[str]:
    """Cranfield, BM25 -> the tiny cross-encoder at depth 10: the end-to-end runs' system."""
    return cranfield_overrides(
        cache,
        "retriever=bm25",
        "reranker=minilm_l6",
        f"reranker.model={model}",
        "pipeline.depth=10",
        *extra,
    )


@pytest.fixture(scope="module")
def bm25_to_cross_encoder(tmp_path_factory, tiny_cross_encoder, session_cache):
    folder = tmp_path_factory.mktemp("run") / "bm25-ce"
    result = evalkit_run(
        *bm25_to_tiny_ce(session_cache, tiny_cross_encoder, f"hydra.run.dir={folder}")
    )
    (folder.parent / "terminal.txt").write_text(result.stdout + result.stderr)
    return folder


@pytest.mark.slow
def test_the_terminal_names_each_phase_and_shows_only_evalkits_bars(bm25_to_cross_encoder):
    """Phase lines in run order, each with its seconds; no bm25s or transformers bar
    (evalkit's own bars are off in these runs: ``show_progress=false``)."""
    shown = (bm25_to_cross_encoder.parent / "terminal.txt").read_text()
    phases = ["load data", "load models", "quality pass", "evaluate", "latency"]
    ends = [shown.index(f"{name}: done in ") for name in phases]  # each once, in order
    assert ends == sorted(ends)
    for foreign in ("Split strings", "Stem Tokens", "BM25S", "Loading weights"):
        assert foreign not in shown
    assert "%|" not in shown  # show_progress=false here: no bar of anyone's


@pytest.mark.slow
def test_cli_writes_the_result_folder_contract(bm25_to_cross_encoder):
    assert {p.name for p in bm25_to_cross_encoder.iterdir()} >= RESULT_FILES
    metrics = json.loads((bm25_to_cross_encoder / "metrics.json").read_text())
    assert set(metrics["first_stage"]) == set(DEFAULT_MEASURES) == set(metrics["reranked"])
    assert metrics["num_queries"] == 225
    assert metrics["recall_at_depth"]["measure"] == "R@10"
    assert metrics["contract"]["ranking"].startswith("score descending, ties broken by doc id")
    per_query = pd.read_parquet(bm25_to_cross_encoder / "per_query.parquet")
    assert list(per_query.columns) == ["stage", "query_id", "measure", "value"]
    # both stages: the asked measures plus R@10, the recall at depth (each once)
    assert len(per_query) == 2 * 225 * (len(DEFAULT_MEASURES) + 1)
    assert not per_query.duplicated(["stage", "query_id", "measure"]).any()
    env = json.loads((bm25_to_cross_encoder / "env.json").read_text())
    assert env["packages"]["ir-measures"] and env["hardware"]["cpu_count"]


@pytest.mark.slow
def test_metrics_json_matches_pytrec_eval_on_its_own_run_files(bm25_to_cross_encoder, cranfield):
    metrics = json.loads((bm25_to_cross_encoder / "metrics.json").read_text())
    for stage in ("first_stage", "reranked"):
        run = read_trec_run(bm25_to_cross_encoder / f"run.{stage}.trec")
        reference = pytrec_reference(run, cranfield.qrels)
        for name in DEFAULT_MEASURES:
            assert metrics[stage][name] == pytest.approx(reference[name], abs=1e-9), (stage, name)


@pytest.mark.slow
def test_trec_files_are_ranked_and_keep_the_tail(bm25_to_cross_encoder):
    lines = (bm25_to_cross_encoder / "run.reranked.trec").read_text().splitlines()
    fields = [line.split() for line in lines]
    assert all(len(f) == 6 and f[1] == "Q0" for f in fields)
    first_query = [f for f in fields if f[0] == fields[0][0]]
    assert [int(f[3]) for f in first_query] == list(range(1, len(first_query) + 1))
    scores = [float(f[4]) for f in first_query]
    assert scores == sorted(scores, reverse=True)
    first = read_trec_run(bm25_to_cross_encoder / "run.first_stage.trec")
    reranked = read_trec_run(bm25_to_cross_encoder / "run.reranked.trec")
    assert len(first) == len(reranked) > 225 * 10  # tail below depth kept


@pytest.mark.slow
def test_latency_json_reports_online_and_offline(bm25_to_cross_encoder):
    latency = json.loads((bm25_to_cross_encoder / "latency.json").read_text())
    online = latency["online"]
    for stage in ("first_stage", "rerank", "total"):
        assert {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms", "qps"} <= set(online[stage])
    conditions = online["conditions"]
    assert conditions["sample_queries"] == 5 and conditions["warmup_queries"] == 1
    assert conditions["max_length"] == 512 and conditions["pairs_measured"] == 50
    assert latency["offline"]["rerank_pairs_per_second"] > 0
    split = online["rerank_split"]  # where the rerank stage's time went
    parts = split["tokenize_s"] + split["wait_for_batch_s"] + split["forward_s"] + split["other_s"]
    assert parts == pytest.approx(split["total_s"]) and split["forward_s"] > 0
    assert 0 < split["not_model_share"] < 1
    predicted = online["predicted_all_queries"]  # every query, from its own pairs and tokens
    assert predicted["queries"] == 225 and predicted["check"]["timed_queries"] == 5
    assert predicted["label"].startswith("prediction") and predicted["p95_ms"] > 0
    check = predicted["check"]
    assert check["passes"] == (check["relative_error"] <= check["tolerance"])
    assert check["measured_p95_on_timed_ms"] == pytest.approx(
        np.percentile(online["per_query_ms"]["total"], 95)
    )


@pytest.mark.slow
def test_rerun_of_a_complete_folder_is_skipped(
    bm25_to_cross_encoder, tiny_cross_encoder, session_cache
):
    before = (bm25_to_cross_encoder / "metrics.json").stat().st_mtime_ns
    folder = f"hydra.run.dir={bm25_to_cross_encoder}"
    evalkit_run(*bm25_to_tiny_ce(session_cache, tiny_cross_encoder, folder))
    assert (bm25_to_cross_encoder / "metrics.json").stat().st_mtime_ns == before


def test_user_errors_are_one_line_with_nonzero_exit(tmp_path):
    result = evalkit_run(
        "dataset=local",
        f"dataset.path={tmp_path}/nowhere",
        f"hydra.run.dir={tmp_path}/out",
        check=False,
    )
    assert result.returncode == 2
    assert "evalkit: error: dataset folder does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_dense_minilm_to_cross_encoder(
    tmp_path, minilm_path, tiny_cross_encoder, session_cache, cranfield
):
    cfg = compose(
        cranfield_overrides(
            session_cache,
            "retriever=minilm",
            f"retriever.model={minilm_path}",
            "reranker=minilm_l6",
            f"reranker.model={tiny_cross_encoder}",
            "pipeline.depth=20",
        )
    )
    metrics = run_experiment(cfg, tmp_path / "dense").metrics
    assert metrics["first_stage"]["nDCG@10"] == pytest.approx(0.3819, abs=0.01)
    assert set(read_trec_run(tmp_path / "dense" / "run.reranked.trec").doc_id) <= set(
        cranfield.corpus.doc_id
    )


@pytest.mark.slow
def test_biencoder_second_stage_rescores_bm25_candidates(tmp_path, minilm_path, session_cache):
    cfg = compose(
        cranfield_overrides(
            session_cache,
            "reranker=biencoder",
            f"reranker.model={minilm_path}",
            "pipeline.depth=100",
            "latency.enabled=false",
        )
    )
    metrics = run_experiment(cfg, tmp_path / "bi").metrics
    # all-MiniLM-L6-v2 rescoring BM25's top 100 on Cranfield: 0.3922 nDCG@10 (BM25 0.3694),
    # as measured by `evalkit-run -m experiments=quickstart` (docs/benchmarks.md)
    assert metrics["first_stage"]["nDCG@10"] == pytest.approx(0.3694, abs=1e-4)
    assert metrics["reranked"]["nDCG@10"] == pytest.approx(0.3922, abs=2e-3)
    assert metrics["reranked"]["R@100"] == metrics["first_stage"]["R@100"]  # same candidates
    assert metrics["quality_meaningful"] is True


@pytest.mark.slow  # an end-to-end run in a subprocess (the fast tier stays under 3 min)
def test_a_folder_of_another_config_is_not_overwritten(tmp_path, session_cache):
    folder = tmp_path / "run"
    base = cranfield_overrides(session_cache, "reranker=none", "latency.enabled=false")
    run_experiment(compose(base), folder)
    with pytest.raises(Exception, match="holds a finished run of a different config"):
        run_experiment(compose([*base, "pipeline.first_stage_k=100"]), folder)


def test_bi_encoder_checkpoint_used_as_cross_encoder_is_flagged(minilm_path, session_cache, caplog):
    from evalkit.config import build_scorer, validate

    config = validate(
        compose(
            cranfield_overrides(
                session_cache,
                "reranker=minilm_l6",
                f"reranker.model={minilm_path}",
                "reranker.device=cpu",
            )
        )
    )
    with caplog.at_level("WARNING"):
        build_scorer(config)
    assert "is a BertModel checkpoint, not a cross-encoder" in caplog.text
