"""Latency measurement logic with a fake clock and fake stages of known duration."""

from __future__ import annotations

import threading

import pytest

from evalkit.timing import measure_online, summarize


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


def test_sample_throughput_times_the_runs_own_pairs_without_cache():
    import numpy as np
    import pandas as pd

    from evalkit.timing import sample_throughput

    clock = FakeClock()

    class Scorer:
        def __init__(self):
            self.scored: list[int] = []

        def score(self, pairs):
            self.scored.append(len(pairs))
            clock.work(2 * len(pairs))  # 2 ms per pair -> 500 pairs/s
            return np.zeros(len(pairs), dtype=np.float32)

    run = pd.DataFrame(
        {"query_id": ["q"] * 5, "doc_id": list("abcde"), "score": [5.0, 4.0, 3.0, 2.0, 1.0]}
    )
    queries = pd.DataFrame({"query_id": ["q"], "text": ["wind"]})
    corpus = pd.DataFrame({"doc_id": list("abcde"), "title": "", "text": list("vwxyz")})
    scorer = Scorer()
    doc_text = dict(zip(corpus.doc_id, corpus.text, strict=True))
    result = sample_throughput(scorer, run, queries, doc_text, depth=4, limit=3, clock=clock)
    assert scorer.scored == [3, 3]  # warm-up, then the timed sample (top 3 within depth 4)
    assert result["rerank_pairs_per_second"] == pytest.approx(500.0)
    assert "sample of 3" in result["rerank_pairs_per_second_source"]
