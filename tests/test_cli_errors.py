"""The bad-input catalogue at the CLI: one line naming what and where, exit 2, no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import CRANFIELD
from tests.test_e2e import evalkit_run

LOCAL = ["dataset=local", f"dataset.path={CRANFIELD}", "show_progress=false"]
CASES = {
    "missing dataset folder": (
        ["dataset=local", "dataset.path=/nonexistent/beir"],
        "dataset folder does not exist: /nonexistent/beir",
    ),
    "unknown split": ([*LOCAL, "dataset.split=dev"], "split 'dev' not found"),
    "unknown measure": ([*LOCAL, "eval.metrics=[nDGC@10]"], "unknown measure 'nDGC@10'"),
    "depth beyond first stage": (
        [*LOCAL, "pipeline.depth=2000"],
        "pipeline.depth=2000 must be between 1 and",
    ),
    "model path missing": (
        [*LOCAL, "reranker.model=/models/not-here"],
        "model path does not exist: /models/not-here",
    ),
    "hub cross-encoder offline": (
        [*LOCAL, "reranker.model=some-org/not-downloaded-reranker"],
        "reranker.model 'some-org/not-downloaded-reranker' is not in the local cache",
    ),
    "hub bi-encoder retriever offline": (
        [*LOCAL, "retriever=minilm", "reranker=none"],
        "retriever.model 'sentence-transformers/all-MiniLM-L6-v2' is not in the local cache",
    ),
    "hub bi-encoder second stage offline": (
        [*LOCAL, "reranker=biencoder"],
        "reranker.model 'sentence-transformers/all-MiniLM-L6-v2' is not in the local cache",
    ),
    "unknown reranker option": (
        ["reranker=minilm-l6"],
        "unknown option 'minilm-l6' for reranker (reranker); fix: choose one of [",
    ),
    "misspelled top-level key": (
        ["pipline.depth=10"],
        "unknown config key 'pipline.depth' (pipline.depth); fix: did you mean pipeline.depth?",
    ),
    "misspelled key in a group": (
        ["reranker.max_lenght=64"],
        "did you mean reranker.max_length?",
    ),
    "unknown option inside a sweep": (
        ["-m", "reranker=none,colbertt"],
        "unknown option 'colbertt' for reranker",
    ),
    "depth zero": ([*LOCAL, "reranker=none", "pipeline.depth=0"], "pipeline.depth must be >= 1"),
    "cutoff zero": ([*LOCAL, "eval.metrics=[nDCG@0]"], "measure 'nDCG@0' has cutoff=0"),
    "escaping dataset name": (
        ["dataset.name=x/../../../../escaped"],
        "dataset.name='x/../../../../escaped' is not a safe name",
    ),
    "negative budget for latency": ([*LOCAL, "latency.max_seconds=-1"], "latency.max_seconds"),
    "remote code not configured": (
        [*LOCAL, "reranker.trust_remote_code=true"],
        "trust_remote_code=true for 'cross-encoder/ms-marco",
    ),
    "local without path": (["dataset=local"], "dataset=local needs a folder"),
}


# the cases that load a model before failing take seconds each: slow tier
LOADS_A_MODEL = {
    "model path missing",
    "hub cross-encoder offline",
    "hub bi-encoder retriever offline",
    "hub bi-encoder second stage offline",
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c in LOADS_A_MODEL else c for c in sorted(CASES)],
)
def test_bad_input_is_one_clear_line(case, tmp_path):
    overrides, message = CASES[case]
    result = evalkit_run(
        *overrides, f"hydra.run.dir={tmp_path}/run", f"cache.dir={tmp_path}/c", check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("evalkit: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # a failed run leaves no folder behind
    # the error, at most a log line or two (phase lines, "[INFO] load data ...", aside)
    said = [line for line in result.stderr.strip().splitlines() if not line.startswith("[INFO]")]
    assert len(said) <= 3, said


def test_a_run_folder_that_cannot_be_made_is_one_line_before_hydra_starts(tmp_path):
    (tmp_path / "a-file").write_text("mine\n")
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        result = evalkit_run(
            *LOCAL, "reranker=none", f"{key}={tmp_path}/a-file/run", "-m", check=False
        )
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"evalkit: error: {key}=" in result.stderr
        assert "a-file is a file, not a folder" in result.stderr
        assert "Traceback" not in result.stderr
    assert (tmp_path / "a-file").read_text() == "mine\n"


@pytest.mark.slow  # loads the hub client and probes it
def test_offline_hub_model_error_names_the_offline_fix(tmp_path):
    result = evalkit_run(*LOCAL, "retriever=minilm", f"hydra.run.dir={tmp_path}/run", check=False)
    assert result.returncode == 2
    assert "retriever=minilm_packaged" in result.stderr  # the fix names the packaged model
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr


def test_hub_probe_runs_once_and_switches_the_hub_clients_offline(monkeypatch):
    import socket

    import huggingface_hub.constants

    from evalkit.models import hub

    calls = []

    def unreachable(*args, **kwargs):
        calls.append(args)
        raise OSError("no route")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub.hub_reachable.cache_clear()
    try:
        assert hub.hub_reachable() is False and hub.hub_reachable() is False
        assert len(calls) == 1  # probed once per process
        assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    finally:
        hub.hub_reachable.cache_clear()


def test_verbose_shows_the_traceback(tmp_path):
    result = evalkit_run(
        "dataset=local",
        "dataset.path=/nonexistent",
        "verbose=true",
        f"hydra.run.dir={tmp_path}/run",
        check=False,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.slow  # an end-to-end evalkit-run in a subprocess
def test_run_folders_are_named_after_the_dataset_folder_and_marked_cost_only(tmp_path):
    import subprocess
    import sys

    from tests.conftest import TOY

    for reranker in ("none", "minilm_l6_costonly"):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from evalkit.cli import run_main; run_main()",
                "dataset=local",
                f"dataset.path={TOY}",
                f"reranker={reranker}",
                "pipeline.depth=5",
                "reranker.max_length=32",
                "latency.enabled=false",
                "latency.throughput_pairs=4",
                f"cache.dir={tmp_path / 'cache'}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "[DEBUG]" not in result.stderr  # bm25s's debug lines stay quiet
    runs = [p for p in (tmp_path / "results" / "runs").iterdir() if p.is_dir()]
    names = sorted(p.name.split("_", 2)[2] for p in runs)  # <date>_<time>_<name>
    assert names == ["toy_bm25", "toy_bm25_minilm_l6-costonly_d5"]
