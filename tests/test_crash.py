"""Crash safety with real SIGKILLs, torn cache entries, and determinism."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from evalkit.cache import cached_file
from tests.conftest import CRANFIELD

KILL_POINTS = ["rerank_chunk", "after_runs", "before_rename:metrics.json", "before_marker"]


def overrides(folder, cache, model):
    return [
        "dataset=local",
        f"dataset.path={CRANFIELD}",
        "dataset.max_queries=20",
        "reranker=minilm_l6",
        f"reranker.model={model}",
        "reranker.batch_size=4",
        "pipeline.depth=10",
        f"cache.dir={cache}",
        "show_progress=false",
        "latency.max_queries=3",
        "latency.warmup=0",
        f"hydra.run.dir={folder}",
    ]


def run_cli(args, kill_at=None):
    env = dict(os.environ)
    env.pop("EVALKIT_KILL_AT", None)
    if kill_at:
        env["EVALKIT_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-c", "from evalkit.cli import run_main; run_main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tiny_cross_encoder):
    root = tmp_path_factory.mktemp("clean")
    result = run_cli(overrides(root / "run", root / "cache", tiny_cross_encoder))
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "run"


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_never_leaves_a_complete_looking_folder(
    point, tmp_path, tiny_cross_encoder, clean_run
):
    folder, cache = tmp_path / "run", tmp_path / "cache"
    killed = run_cli(overrides(folder, cache, tiny_cross_encoder), kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (folder / "complete.json").exists()
    if point == "before_rename:metrics.json":
        assert not (folder / "metrics.json").exists()  # only its temp file was written
    database = cache / "pair_scores.sqlite"
    if database.exists():  # the cache survived the kill and is consistent
        with sqlite3.connect(database) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rerun = run_cli(overrides(folder, cache, tiny_cross_encoder))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (folder / "complete.json").is_file()
    for name in ("run.first_stage.trec", "run.reranked.trec"):
        assert (folder / name).read_text() == (clean_run / name).read_text(), name
    assert (folder / "metrics.json").read_text() == (clean_run / "metrics.json").read_text()


@pytest.mark.slow
def test_two_runs_of_one_config_are_identical(tmp_path, tiny_cross_encoder, clean_run):
    again = run_cli(overrides(tmp_path / "run", tmp_path / "fresh-cache", tiny_cross_encoder))
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("run.first_stage.trec", "run.reranked.trec", "metrics.json"):
        assert (tmp_path / "run" / name).read_bytes() == (clean_run / name).read_bytes(), name
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "run" / "per_query.parquet"),
        pd.read_parquet(clean_run / "per_query.parquet"),
    )


def test_torn_cache_file_is_detected_and_recomputed(tmp_path):
    path = tmp_path / "embeddings.npy"
    calls = []

    def compute(target):
        calls.append(1)
        with target.open("wb") as handle:
            np.save(handle, np.arange(6, dtype=np.float32).reshape(3, 2), allow_pickle=False)

    def load(target):
        return np.load(target, allow_pickle=False)

    first = cached_file(path, compute, load)
    path.write_bytes(path.read_bytes()[:40])  # torn: header and half the data
    second = cached_file(path, compute, load)
    assert len(calls) == 2 and (first == second).all()


def test_kill_while_writing_a_cache_file_leaves_no_entry(tmp_path):
    code = (
        "import numpy as np, pathlib\n"
        "from evalkit.cache import cached_file\n"
        f"p = pathlib.Path({str(tmp_path / 'e.npy')!r})\n"
        "cached_file(p, lambda t: np.save(t.open('wb'), np.ones(3)), np.load)\n"
    )
    env = {**os.environ, "EVALKIT_KILL_AT": "cache_before_rename"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert not (tmp_path / "e.npy").exists()
