"""Benchmark scripts must not rot: each one starts, and those with a ``--smoke`` mode run it.

They are timed by hand (docs/benchmarks.md); here only that they still run is checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=BENCHMARKS
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_starts(script):
    done = run(script, "--help", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_the_latency_benchmark_smoke_run_measures_a_query(tmp_path):
    done = run("latency.py", "--smoke", "--cache", str(tmp_path), "--out", str(tmp_path / "o.md"))
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "o.md").read_text()
    assert "| minilm_l6 | 2 | 1 |" in table  # one row: MiniLM-L6 at depth 2, one query
