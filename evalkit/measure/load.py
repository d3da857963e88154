"""Latency under load: an open-loop load test with dynamic batching, measured for real.

Queries arrive as a Poisson process at each offered QPS (arrival times drawn up front, so
they never wait for the server: open loop). One replica serves them the way TEI- or
Triton-style servers do: queries wait in one FIFO queue; when the server is free it opens
a batch with the oldest query and keeps admitting arrivals until the batch holds
``max_batch_pairs`` pairs or ``max_wait_ms`` has passed since the oldest query arrived;
it then runs the first stage of each admitted query and scores all their pairs in one
call. A query's latency is its completion time minus its arrival time (queueing
included).

Every batch's service time is recorded with its shape (queries, pairs, tokens), so
:mod:`evalkit.measure.simulate` can fit the service-time model and predict the same curve for N
replicas. The clock is injectable: tests drive this loop with a virtual clock and a fake
scorer whose service time is known (M/D/1 gives the expected mean wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

SATURATION_SHARE = 0.95  # achieved below this share of the offered rate: saturated


class RealClock:
    """Seconds from ``time.perf_counter``; ``sleep_until`` sleeps."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, moment: float) -> None:
        delay = moment - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


class VirtualClock:
    """A clock that only moves when told to (tests): ``advance`` is the service time."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, moment: float) -> None:
        self.t = max(self.t, moment)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass(frozen=True)
class Batching:
    """The server's dynamic batching policy."""

    max_batch_pairs: int = 256
    max_wait_ms: float = 5.0


@dataclass
class Query:
    """One query of the load: what the server must do for it."""

    query_id: str
    pairs: int  # candidates it reranks
    tokens: int  # tokens of those pairs (after truncation)


@dataclass
class BatchRecord:
    queries: int
    pairs: int
    tokens: int
    service_ms: float


@dataclass
class LoadPoint:
    """One offered rate: what happened."""

    offered_qps: float
    achieved_qps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    mean_wait_ms: float
    queries: int
    saturated: bool
    unfinished: int = 0  # queries still queued when the time limit stopped the run
    utilisation: float = 0.0  # share of the time the server was computing
    batches: list[BatchRecord] = field(default_factory=list, repr=False)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {
            "offered_qps": self.offered_qps,
            "achieved_qps": self.achieved_qps,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "mean_wait_ms": self.mean_wait_ms,
            "queries": self.queries,
            "saturated": self.saturated,
            "unfinished": self.unfinished,
            "utilisation": self.utilisation,
            "mean_batch_queries": float(np.mean([b.queries for b in self.batches]))
            if self.batches
            else None,
            "batches": [
                [b.queries, b.pairs, b.tokens, round(b.service_ms, 4)] for b in self.batches
            ],
            "latencies_ms": [round(float(x), 4) for x in self.latencies_ms],
        }


def poisson_arrivals(qps: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` arrival times (seconds from 0) of a Poisson process at ``qps``.

    Example:
        >>> times = poisson_arrivals(10.0, 5, np.random.default_rng(0))
        >>> len(times), bool((np.diff(times) > 0).all())
        (5, True)
    """
    return np.cumsum(rng.exponential(1.0 / qps, size=count))


def _gather(
    first: int,
    arrivals: Sequence[float],
    queries: Sequence[Query],
    batching: Batching,
    clock,
    start,
) -> tuple[list[int], int]:
    """One batch, opened by query ``first``: queries join while they fit, until the batch
    is full or ``max_wait_ms`` after ``first`` arrived. Returns ``(indices, pairs)``."""
    n = len(arrivals)
    batch, pairs, following = [first], queries[first].pairs, first + 1
    deadline = arrivals[first] + batching.max_wait_ms / 1000
    full = False
    while following < n:
        if pairs >= batching.max_batch_pairs:
            full = True
            break
        if arrivals[following] <= clock.now() - start:  # it has arrived: does it fit?
            if pairs + queries[following].pairs > batching.max_batch_pairs:
                full = True  # no: serve now
                break
            pairs += queries[following].pairs
            batch.append(following)
            following += 1
            continue
        if arrivals[following] > deadline:
            break
        clock.sleep_until(start + arrivals[following])  # it arrives within the window
    if not full and clock.now() - start < deadline:
        clock.sleep_until(start + deadline)  # room left: the window stays open
    return batch, pairs


def serve(
    arrivals: Sequence[float],
    queries: Sequence[Query],
    run_batch: Callable[[list[int]], None],
    batching: Batching,
    clock=None,
    progress: Callable[[int], None] | None = None,
    stop_after: float | None = None,
) -> tuple[np.ndarray, np.ndarray, list[BatchRecord]]:
    """Serve ``queries[i]`` arriving at ``arrivals[i]`` (seconds from the start) with dynamic
    batching; ``run_batch(indices)`` does the work of one batch (first stages + rerank).

    Returns ``(latency_s, wait_s, batches)``: each query's completion minus arrival time,
    its time in the queue before its batch started, and every batch's shape and time.
    ``stop_after`` (seconds): no batch starts after it; queries still waiting then get
    NaN latency (they are counted as unfinished; the server could not keep up).
    """
    clock = clock or RealClock()
    n = len(arrivals)
    latency = np.zeros(n)
    wait = np.zeros(n)
    batches: list[BatchRecord] = []
    start = clock.now()
    following = 0  # the next query not yet in a batch
    while following < n:
        if stop_after is not None and clock.now() - start > stop_after:
            latency[following:] = np.nan
            wait[following:] = np.nan
            break
        if clock.now() - start < arrivals[following]:
            clock.sleep_until(start + arrivals[following])  # idle until the next arrival
        batch, pairs = _gather(following, arrivals, queries, batching, clock, start)
        following = batch[-1] + 1
        began = clock.now()
        run_batch(batch)
        done = clock.now()
        batches.append(
            BatchRecord(
                len(batch),
                pairs,
                sum(queries[i].tokens for i in batch),
                (done - began) * 1000,
            )
        )
        for i in batch:
            latency[i] = done - start - arrivals[i]
            wait[i] = began - start - arrivals[i]
        if progress is not None:
            progress(len(batch))
    return latency, wait, batches


def summarise(
    offered: float,
    arrivals: np.ndarray,
    latency: np.ndarray,
    wait: np.ndarray,
    batches: list[BatchRecord],
    servers: int = 1,
) -> LoadPoint:
    """One offered rate's numbers. ``achieved_qps`` is queries over the time from the first
    arrival to the last completion. The rate saturated the server when that falls below
    95% of the rate the arrivals actually had (it fell behind), when the server was busy
    95% of that time or more (it never caught up with its queue), or when queries were
    left unfinished at the time limit."""
    unfinished = int(np.isnan(latency).sum())
    if unfinished:  # they waited at least until the run stopped: a lower bound, saturated
        stop = float(np.nanmax(arrivals + latency)) if unfinished < len(latency) else 0.0
        latency = np.where(np.isnan(latency), np.maximum(stop - arrivals, 0.0), latency)
        wait = np.where(np.isnan(wait), np.maximum(stop - arrivals, 0.0), wait)
    n = len(latency)
    finish = arrivals + latency
    completion_span = float(finish.max() - arrivals.min()) if n else 0.0
    arrival_span = float(arrivals.max() - arrivals.min()) if n > 1 else 0.0
    achieved = n / completion_span if completion_span > 0 else 0.0
    realised = (n - 1) / arrival_span if arrival_span > 0 else float(offered)
    ms = latency * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    busy = sum(b.service_ms for b in batches) / 1000
    utilisation = busy / (servers * completion_span) if completion_span > 0 else 0.0
    return LoadPoint(
        offered_qps=float(offered),
        achieved_qps=float(achieved),
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(ms.mean()),
        mean_wait_ms=float(wait.mean() * 1000),
        queries=n,
        saturated=bool(
            achieved < SATURATION_SHARE * realised or utilisation >= SATURATION_SHARE or unfinished
        ),
        utilisation=float(utilisation),
        unfinished=unfinished,
        batches=batches,
        latencies_ms=ms.tolist(),
    )


def curve_summary(points: list[LoadPoint]) -> dict:
    """The highest offered rate served without saturating, and the first that saturated."""
    calm = [p.offered_qps for p in points if not p.saturated]
    tired = [p.offered_qps for p in points if p.saturated]
    return {
        "max_sustained_qps": max(calm) if calm else None,
        "saturation_qps": min(tired) if tired else None,
    }


def load_curve(
    offered: Sequence[float],
    shapes: Sequence[Query],
    run_batch: Callable[[list[int]], None],
    batching: Batching,
    count: int,
    seed: int = 0,
    progress_factory=None,
    clock=None,
    max_seconds: float | None = None,
) -> list[LoadPoint]:
    """Measure every offered rate: ``count`` queries drawn (seeded, with replacement) from
    ``shapes`` arrive as a Poisson process; ``run_batch`` receives indices into ``shapes``.
    With ``max_seconds``, arrivals stop at that time (fewer queries at low rates) and no
    batch starts after 1.5 times it (queries left then are unfinished: saturated)."""
    rng = np.random.default_rng(seed)
    points = []
    for qps in offered:
        arrivals = poisson_arrivals(qps, count, rng)
        picks = rng.integers(len(shapes), size=count)
        if max_seconds is not None:
            keep = max(int((arrivals < max_seconds).sum()), 2)
            arrivals, picks = arrivals[:keep], picks[:keep]
        chosen = [shapes[int(i)] for i in picks]
        bar = progress_factory(qps, len(picks)) if progress_factory else None
        try:
            latency, wait, batches = serve(
                arrivals,
                chosen,
                lambda indices, picks=picks: run_batch([int(picks[i]) for i in indices]),
                batching,
                clock,
                bar.update if bar is not None else None,
                1.5 * max_seconds if max_seconds is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        points.append(summarise(qps, arrivals, latency, wait, batches))
    return points
