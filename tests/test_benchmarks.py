"""Benchmark scripts must not rot: the slow tier (CI) runs each one's ``--smoke`` mode
(141 s of the fast tier's 8 min 46 s on a slow 2-core machine: too much for plain pytest).

They are timed by hand (docs/benchmarks.md); here only that they run end to end and print
their table is checked, never a timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(
    p.name
    for p in BENCHMARKS.iterdir()
    if p.suffix in (".py", ".sh") and not p.name.startswith("_")
)
# what each smoke run prints when it got to the end (a row of its table)
EXPECTED = {
    "backends.py": "onnxruntime fp32 |",
    "batch_shapes.py": "| ST encode |",
    "bring_your_own.sh": "(written to",
    "load_validation.sh": "service model:",
    "cache_verify.py": "| embedding shard 1,000 x 384 fp32",
    "cranfield_quality.py": "| BM25 |",
    "gpu_all.sh": "== results (cpu) ==",
    "gpu_check.py": "| minilm_l6 | fp32 |",
    "latency.py": "| minilm_l6 | 2 | 1 |",
    "rerank_speed.py": "Speed-up:",
    "scale.py": "| 1,000 |",
    "scoring_path.py": "| bare forward, 32 x 300 tokens |",
}


def test_every_benchmark_script_has_a_smoke_check():
    assert sorted(EXPECTED) == SCRIPTS


@pytest.mark.slow
def test_every_benchmark_smoke_run(tmp_path):
    """All smoke runs at once (they are mostly interpreter start-up and imports): each
    exits 0 and prints its table's row."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    running = {}
    for script in SCRIPTS:
        runner = sys.executable if script.endswith(".py") else "bash"
        args = [runner, script, "--smoke"]
        if script == "latency.py":
            args += ["--cache", str(tmp_path / "latency-cache")]
        out = {"OUT": str(tmp_path / "gpu")} if script == "gpu_all.sh" else {}
        running[script] = subprocess.Popen(
            args,
            cwd=BENCHMARKS,
            env={**env, **out},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    failed = []
    for script, process in running.items():
        out, err = process.communicate(timeout=600)
        if process.returncode != 0 or EXPECTED[script] not in out:
            failed.append((script, process.returncode, err[-1500:], out[-500:]))
    assert failed == []


@pytest.mark.slow
def test_the_gpu_run_without_its_wheels_says_how_to_get_them(tmp_path):
    """The device call made without ``.whl`` (the GPU machine reaches no index): the GPU
    check still runs on the image's own packages, the scoring step is skipped with one
    line naming ``--wheels``, and the exit code says something was missing."""
    hidden = tmp_path / "hidden" / "bm25s"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('not on this machine')\n")
    (tmp_path / "no-wheels").mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(hidden.parent),
        "EVALKIT_WHEELS": str(tmp_path / "no-wheels"),
        "OUT": str(tmp_path / "gpu"),
    }
    done = subprocess.run(
        ["bash", "gpu_all.sh", "--smoke"],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr[-1500:]
    assert "bm25s is not installed here; run 'bash benchmarks/gpu_all.sh --wheels'" in done.stdout
    assert "| minilm_l6 | fp32 |" in (tmp_path / "gpu" / "gpu_check.md").read_text()
    assert not (tmp_path / "gpu" / "scoring_path.md").exists()
