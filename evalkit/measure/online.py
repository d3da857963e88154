"""Latency the way a serving engineer measures it.

*Online* mode: queries one at a time in a closed loop (``concurrency`` workers, each
sending its next query when the last one finished), every query timed end to end and per
stage with ``perf_counter_ns``; CUDA is synchronised at every stage boundary; warm-up
queries run first and are excluded; models are loaded and data read before timing starts.
Reported per stage: p50, p95, p99 (numpy's linear interpolation), mean, max, and QPS
(measured queries / wall time of the measured loop).

*Offline* mode is the throughput of the batched evaluation run (see
:mod:`evalkit.pipeline`); the two are reported side by side, never mixed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.types import Clock, Stage


def summarize(milliseconds: Sequence[float]) -> dict:
    """p50/p95/p99/mean/max of a latency sample in ms.

    Example:
        >>> summarize([float(i) for i in range(1, 101)])["p95_ms"]
        95.05
    """
    values = np.asarray(milliseconds, dtype=np.float64)
    if values.size == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(values.mean()),
        "max_ms": float(values.max()),
    }


@dataclass
class OnlineResult:
    per_query: pd.DataFrame  # query index, stage, ms (measured queries only)
    wall_seconds: float
    measured: int
    warmup: int
    concurrency: int

    def summary(self) -> dict:
        """Per stage: p50/p95/p99/mean/max, QPS, and a 95% CI of p95."""
        stages = {}
        for stage, frame in self.per_query.groupby("stage", sort=False):
            stats = summarize(frame["ms"].tolist())
            stats["qps"] = self.measured / self.wall_seconds if self.wall_seconds else None
            stats["p95_ci_ms"] = list(quantile_ci(frame["ms"].tolist()))
            stages[stage] = stats
        return stages


def _timer(stages: Sequence[Stage], clock: Clock, sync: Callable[[], None]):
    """A function that runs one query through ``stages`` and returns ``(stage, ms)`` for
    each stage and the ``total``, the clock read after a synchronise at every boundary."""

    def one(query: object) -> list[tuple[str, float]]:
        timings = []
        sync()
        started = clock()
        value, previous = query, started
        for name, fn in stages:
            value = fn(value)
            sync()
            now = clock()
            timings.append((name, (now - previous) / 1e6))
            previous = now
        timings.append(("total", (previous - started) / 1e6))
        return timings

    return one


def measure_online(
    stages: Sequence[Stage],
    queries: Sequence[object],
    warmup: int = 3,
    concurrency: int = 1,
    clock: Clock = time.perf_counter_ns,
    synchronize: Callable[[], None] | None = None,
    max_seconds: float | None = None,
    progress: Callable[[int], None] | None = None,
    stop_when: Callable[[list[float]], bool] | None = None,
) -> OnlineResult:
    """Time ``stages`` per query in a closed loop; ``total`` is their end-to-end sum.

    Args:
        stages: ``(name, fn)`` in order; ``fn`` receives the previous stage's output.
        queries: what the first stage receives, one item per query.
        warmup: queries run first (cycling through ``queries``) and not reported.
        concurrency: closed-loop workers (1 = one query at a time).
        clock: nanosecond clock (injectable for tests).
        synchronize: called before every clock read (``torch.cuda.synchronize`` on GPU).
        max_seconds: time budget of the measured loop: no query starts after it is spent
            (at least one query is always measured); ``measured`` says how many ran.
        progress: called with 1 after each measured query (a progress bar).
        stop_when: called with the end-to-end times (ms) measured so far before each query
            starts; True stops the loop (enough evidence, see :func:`p95_decided`).
    """
    sync = synchronize or (lambda: None)
    one = _timer(stages, clock, sync)
    for i in range(warmup):
        one(queries[i % len(queries)])
    rows: list[tuple[int, str, float]] = []
    lock = threading.Lock()
    budget_ns = None if max_seconds is None else int(max_seconds * 1e9)

    sync()
    begin = clock()
    totals: list[float] = []
    stopped = threading.Event()  # once the budget is spent or the evidence suffices

    def record(index: int) -> None:
        if stopped.is_set():
            return
        if index > 0 and budget_ns is not None and clock() - begin > budget_ns:
            stopped.set()
            return
        if index > 0 and stop_when is not None and stop_when(list(totals)):
            stopped.set()
            return
        timings = one(queries[index])
        with lock:
            rows.extend((index, name, ms) for name, ms in timings)
            totals.append(timings[-1][1])
        if progress is not None:
            progress(1)

    _closed_loop(record, len(queries), concurrency)
    sync()
    return _result(rows, (clock() - begin) / 1e9, warmup, concurrency)


def _closed_loop(record: Callable[[int], None], count: int, concurrency: int) -> None:
    """``record(i)`` for every query: in order, or by ``concurrency`` workers."""
    if concurrency == 1:
        for index in range(count):
            record(index)
        return
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(record, range(count)))


def _result(rows: list, wall: float, warmup: int, concurrency: int) -> OnlineResult:
    frame = pd.DataFrame(rows, columns=["query", "stage", "ms"]).sort_values(
        ["query"], kind="stable"
    )
    measured = int(frame["query"].nunique()) if len(frame) else 0
    return OnlineResult(frame.reset_index(drop=True), wall, measured, warmup, concurrency)


def quantile_ci(
    values: Sequence[float], quantile: float = 0.95, level: float = 0.95
) -> tuple[float | None, float | None]:
    """Distribution-free confidence interval of a quantile from order statistics.

    The interval ``[x_(l), x_(u)]`` covers the true quantile with probability at least
    ``level`` (binomial order-statistic bounds); None where the sample is too small for
    that bound (e.g. the upper end of p95 below 59 samples).

    Example:
        >>> quantile_ci([float(i) for i in range(1, 201)])
        (184.0, 197.0)
    """
    from scipy.stats import binom

    data = np.sort(np.asarray(values, dtype=np.float64))
    n = data.size
    if n == 0:
        return None, None
    alpha = (1 - level) / 2
    # ranks l, u (1-based) with P(x_(l) <= q_p) >= 1 - alpha and P(x_(u) >= q_p) >= 1 - alpha
    low_rank = int(binom.ppf(alpha, n, quantile))  # 0-based index of the lower bound
    high_rank = int(binom.ppf(1 - alpha, n, quantile)) + 1
    low = float(data[low_rank - 1]) if low_rank >= 1 else None
    high = float(data[high_rank - 1]) if high_rank <= n else None
    return low, high


def cuda_synchronizer(device: str | None) -> Callable[[], None] | None:
    if not device or not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.synchronize


# Sequential evidence. The online pass may stop as soon as the p95 is decided, so its
# verdicts are read at planned looks with the 5% error split across them (a union bound):
# peeking after every query at a plain 95% CI would flip verdicts between reruns. Looks at
# 10 and 30 queries (1% of alpha each) can only rule a slow system out early; from 90 on,
# look k spends alpha * 0.98 / 2^(k+1). A verdict at n queries uses the alpha of the first
# look at or after n (also when the time budget, not a look, ended the loop).
ALPHA = 0.05
EARLY_LOOKS = (10, 30)


def looks(most: int = 100_000) -> list[int]:
    """The planned look sizes: 10, 30, 90, 113, 141, ... (x1.25)."""
    sizes, n = list(EARLY_LOOKS), 90
    while n <= most:
        sizes.append(n)
        n = int(np.ceil(n * 1.25))
    return sizes


LOOKS = looks()


def verdict_level(n: int) -> float:
    """The confidence level a verdict on ``n`` timed queries is read at."""
    k = next(i for i, size in enumerate(LOOKS) if size >= n)
    if k < len(EARLY_LOOKS):
        return 1 - ALPHA * 0.01
    return 1 - ALPHA * 0.98 / 2 ** (k - len(EARLY_LOOKS) + 1)


def p95_verdict(samples: Sequence[float], budget_ms: float) -> str:
    """``fits`` when the upper end of the p95's CI is within the budget, ``out`` when the
    lower end exceeds it, ``undetermined`` otherwise (too few queries for a bound, or an
    interval that straddles the budget); the CI is read at :func:`verdict_level`.

    Example:
        >>> p95_verdict([float(i) for i in range(1, 201)], 250.0)
        'fits'
        >>> p95_verdict([float(i) for i in range(1, 201)], 190.0), p95_verdict([9.0] * 5, 5.0)
        ('undetermined', 'out')
    """
    low, high = quantile_ci(samples, level=verdict_level(len(samples)))
    if high is not None and high <= budget_ms:
        return "fits"
    if low is not None and low > budget_ms:
        return "out"
    return "undetermined"


def p95_decided(samples: Sequence[float], budgets: Sequence[float]) -> bool:
    """The online pass's stopping rule: at a planned look, whether the p95 is decided
    against every budget (never between looks, never without a budget)."""
    if not budgets or len(samples) not in LOOKS:
        return False
    return all(p95_verdict(samples, budget) != "undetermined" for budget in budgets)


def fewest_for_an_upper_bound() -> int:
    """The fewest timed queries whose p95 can be found within a budget at all."""
    return next(
        n for n in range(1, 1000) if quantile_ci([0.0] * n, level=verdict_level(n))[1] is not None
    )


def queries_to_decide(samples: Sequence[float], budget_ms: float, most: int = 5000) -> int | None:
    """About how many timed queries in all would decide the budget, if the latencies keep
    the distribution measured so far (the order-statistic bounds at the next looks, read
    off the measured quantiles); None when even ``most`` would not (the p95 sits on the
    budget)."""
    from scipy.stats import binom

    data = np.sort(np.asarray(samples, dtype=np.float64))
    if data.size == 0:
        return None
    for n in (size for size in LOOKS if data.size < size <= most):
        alpha = (1 - verdict_level(n)) / 2
        low_rank = int(binom.ppf(alpha, n, 0.95))
        high_rank = int(binom.ppf(1 - alpha, n, 0.95)) + 1
        high = np.quantile(data, min(high_rank / n, 1.0)) if high_rank <= n else np.inf
        low = np.quantile(data, max(low_rank - 1, 0) / n)
        if high <= budget_ms or low > budget_ms:
            return n
    return None
