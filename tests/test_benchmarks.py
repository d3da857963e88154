"""Benchmark scripts must not rot: the fast tier runs each one's ``--smoke`` mode.

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
    "bring_your_own.sh": "(written to",
    "load_validation.sh": "service model:",
    "cache_verify.py": "| embedding shard 1,000 x 384 fp32",
    "cranfield_quality.py": "| BM25 |",
    "gpu_check.py": "| minilm_l6 | fp32 |",
    "latency.py": "| minilm_l6 | 2 | 1 |",
    "rerank_speed.py": "Speed-up:",
    "scale.py": "| 1,000 |",
}


def test_every_benchmark_script_has_a_smoke_check():
    assert sorted(EXPECTED) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_run(script, tmp_path):
    runner = sys.executable if script.endswith(".py") else "bash"
    args = [runner, script, "--smoke"]
    if script == "latency.py":
        args += ["--cache", str(tmp_path)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, cwd=BENCHMARKS, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert EXPECTED[script] in done.stdout, done.stdout[-3000:]
