"""Latency measurement logic with a fake clock and fake stages of known duration."""

from __future__ import annotations

import json
import threading

import pytest

from evalkit.measure.online import measure_online, summarize
from evalkit.measure.throughput import pair_throughput


class FakeClock:
    """A nanosecond clock that only moves when a fake stage 'works'."""

    def __init__(self):
        self.now = 0
        self.lock = threading.Lock()

    def __call__(self) -> int:
        return self.now

    def work(self, milliseconds: float) -> None:
        with self.lock:
            self.now += int(milliseconds * 1e6)


def test_percentiles_are_exact_for_known_inputs():
    stats = summarize([float(i) for i in range(1, 101)])
    # numpy linear interpolation: p50 of 1..100 = 50.5, p95 = 95.05, p99 = 99.01
    assert stats == {
        "p50_ms": 50.5,
        "p95_ms": pytest.approx(95.05),
        "p99_ms": pytest.approx(99.01),
        "mean_ms": 50.5,
        "max_ms": 100.0,
    }


def test_stages_warmup_and_totals():
    clock = FakeClock()
    seen = []

    def encode(query):
        seen.append(query)
        clock.work(2)
        return query

    def search(query):
        clock.work(query)  # query i takes i ms in the first stage
        return query

    def rerank(query):
        clock.work(10)
        return query

    queries = [1, 2, 3, 4]
    result = measure_online(
        [("encode", encode), ("search", search), ("rerank", rerank)], queries, warmup=2, clock=clock
    )
    assert seen[:2] == [1, 2] and len(seen) == 6  # warm-up ran, then every query once
    summary = result.summary()
    assert summary["search"]["p50_ms"] == 2.5 and summary["search"]["max_ms"] == 4.0
    assert summary["encode"]["mean_ms"] == 2.0
    per_query = result.per_query.pivot(index="query", columns="stage", values="ms")
    assert (per_query[["encode", "search", "rerank"]].sum(axis=1) == per_query["total"]).all()
    assert per_query["total"].tolist() == [13.0, 14.0, 15.0, 16.0]  # warm-up excluded
    # 4 queries in 58 ms of measured wall time
    assert summary["total"]["qps"] == pytest.approx(4 / 0.058)


def test_synchronize_is_called_around_every_stage():
    calls = []
    measure_online(
        [("a", lambda q: q), ("b", lambda q: q)],
        [0, 1],
        warmup=0,
        synchronize=lambda: calls.append(1),
    )
    # per query: once before start + once after each stage; plus around the loop
    assert len(calls) == 2 * 3 + 2


def test_concurrency_runs_every_query_once():
    clock = FakeClock()
    result = measure_online(
        [("s", lambda q: clock.work(1) or q)], list(range(20)), warmup=0, concurrency=4, clock=clock
    )
    assert sorted(result.per_query[result.per_query.stage == "s"]["query"]) == list(range(20))
    assert result.concurrency == 4


def test_empty_sample_summary_is_none():
    assert summarize([])["p95_ms"] is None


def test_pair_throughput_times_a_sample_of_the_runs_own_head_pairs():
    import numpy as np
    import pandas as pd

    from evalkit.pipeline import TwoStage

    clock = FakeClock()

    class Scorer:
        fingerprint, max_length, device = "fake", None, None

        def __init__(self):
            self.scored: list[list] = []

        def score(self, pairs):
            self.scored.append(list(pairs))
            clock.work(2 * len(pairs))  # 2 ms per pair -> 500 pairs/s
            return np.zeros(len(pairs), dtype=np.float32)

    run = pd.DataFrame(
        {"query_id": ["q"] * 5, "doc_id": list("abcde"), "score": [5.0, 4.0, 3.0, 2.0, 1.0]}
    )
    queries = pd.DataFrame({"query_id": ["q"], "text": ["wind"]})
    doc_text = dict(zip("abcde", "vwxyz", strict=True))
    scorer = Scorer()
    pipeline = TwoStage(retriever=None, scorer=scorer, depth=4)
    result = pair_throughput(pipeline, run, queries, doc_text, pairs=3, clock=clock)
    timed = scorer.scored[1]
    assert len(scorer.scored[0]) == 3 and len(timed) == 3  # warm-up, then the timed sample
    assert {d for _, d in timed} <= {"v", "w", "x", "y"}  # only the top-4 head, never "z"
    assert result["rerank_pairs_per_second"] == pytest.approx(500.0)
    assert "3 of the run's own top-4 pairs" in result["rerank_pairs_per_second_source"]
    again = TwoStage(retriever=None, scorer=Scorer(), depth=4)
    pair_throughput(again, run, queries, doc_text, pairs=3, clock=FakeClock())
    assert again.scorer.scored[1] == timed  # seeded: the same sample every run


def test_latency_budget_stops_the_loop_but_measures_at_least_one_query():
    clock = FakeClock()
    stages = [("work", lambda q: clock.work(10))]
    result = measure_online(stages, list(range(100)), warmup=0, clock=clock, max_seconds=0.035)
    # queries start at 0, 10, 20, 30 ms (each under the 35 ms budget), the 5th would start at 40
    assert result.measured == 4
    single = measure_online(stages, list(range(5)), warmup=0, clock=clock, max_seconds=0.0)
    assert single.measured == 1


def test_p95_confidence_interval_from_order_statistics():
    from scipy.stats import binom

    from evalkit.measure.online import quantile_ci

    values = [float(i) for i in range(1, 201)]
    low, high = quantile_ci(values)
    # coverage of [x_(184), x_(197)] for the 0.95 quantile of n=200, by the binomial
    coverage = binom.cdf(196, 200, 0.95) - binom.cdf(183, 200, 0.95)
    assert (low, high) == (184.0, 197.0) and coverage >= 0.95
    assert quantile_ci([1.0, 2.0, 3.0])[1] is None  # too few samples for an upper bound


def test_a_run_without_torch_neither_imports_it_nor_claims_its_threads():
    """An HTTP / run-file / plain-Python system is timed without importing torch (its
    threads are not set and env.json says torch was not loaded); once torch is loaded, its
    threads are set around the block and recorded."""
    import subprocess
    import sys

    code = """
import json, sys
from evalkit.env import hardware
from evalkit.measure.machine import torch_threads
with torch_threads(1):
    pass
before = hardware()
assert "torch" not in sys.modules
import torch
torch.set_num_threads(2)
with torch_threads(1):
    inside = torch.get_num_threads()
print(json.dumps([before, hardware(), inside, torch.get_num_threads()]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    without, loaded, inside, after = json.loads(done.stdout)
    assert (without["torch_loaded"], without["torch_threads"], without["gpu"]) == (
        False,
        None,
        None,
    )
    assert loaded["torch_loaded"] is True and loaded["torch_threads"] == 2
    assert (inside, after) == (1, 2)
