"""Replicas by simulation: the measured server, N times, as a discrete-event model (simpy).

:class:`ServiceModel` is fitted to the batches the real load test ran: service time as a
non-negative linear function of the batch's queries, pairs and tokens, times a resampled
ratio of measured to fitted time (so the model keeps the measured variability). The
simulation replays the same policy as :func:`evalkit.measure.load.serve` -- one FIFO queue,
batches opened by the oldest query, closed when full or when its wait window ends -- with
``replicas`` servers taking from the queue. At one replica it must reproduce the measured
curve (checked in every load run, recorded in ``load.json`` → ``validation``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evalkit.measure.load import (
    Batching,
    BatchRecord,
    LoadPoint,
    Query,
    poisson_arrivals,
    summarise,
)

VALIDATION_TOLERANCE = 0.15  # simulated p95 within 15% of the measured p95 below saturation
BAND_RUNS = 40  # simulated runs of the measured length behind the chance band of a p95


@dataclass(frozen=True)
class ServiceModel:
    """``service_ms = (fixed + per_query*q + per_pair*p + per_token*t) * ratio`` where
    ``ratio`` is drawn from ``ratios`` (measured / fitted, one per recorded batch).

    Example:
        >>> model = ServiceModel(fixed=1.0, per_query=0.0, per_pair=0.5, per_token=0.0)
        >>> model.mean_ms(queries=1, pairs=10, tokens=500)
        6.0
    """

    fixed: float
    per_query: float
    per_pair: float
    per_token: float
    ratios: tuple[float, ...] = (1.0,)

    def mean_ms(self, queries: int, pairs: int, tokens: int) -> float:
        return (
            self.fixed + self.per_query * queries + self.per_pair * pairs + self.per_token * tokens
        )

    def draw_ms(self, queries: int, pairs: int, tokens: int, rng: np.random.Generator) -> float:
        ratio = self.ratios[int(rng.integers(len(self.ratios)))] if len(self.ratios) > 1 else 1.0
        return self.mean_ms(queries, pairs, tokens) * ratio

    @classmethod
    def fit(cls, batches: Sequence[BatchRecord]) -> ServiceModel:
        """Non-negative least squares on the recorded batches."""
        from scipy.optimize import nnls

        if not batches:
            raise ValueError("no batches to fit a service model to")
        design = np.array([[1.0, b.queries, b.pairs, b.tokens] for b in batches])
        target = np.array([b.service_ms for b in batches])
        scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
        coefficients, _ = nnls(design / scale, target)
        coefficients = coefficients / scale
        fitted = design @ coefficients
        ratios = tuple(float(r) for r in target / np.maximum(fitted, 1e-9))
        return cls(*(float(c) for c in coefficients), ratios=ratios)

    def to_dict(self) -> dict:
        return {
            "service_ms": "(fixed + per_query*queries + per_pair*pairs + per_token*tokens) * ratio",
            "fixed": self.fixed,
            "per_query": self.per_query,
            "per_pair": self.per_pair,
            "per_token": self.per_token,
            "ratios": list(self.ratios),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ServiceModel:
        return cls(
            data["fixed"],
            data["per_query"],
            data["per_pair"],
            data["per_token"],
            tuple(data.get("ratios") or (1.0,)),
        )


def simulate(
    arrivals: Sequence[float],
    queries: Sequence[Query],
    model: ServiceModel,
    batching: Batching,
    replicas: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[BatchRecord]]:
    """``(latency_s, wait_s, batches)`` of ``queries[i]`` arriving at ``arrivals[i]``,
    served by ``replicas`` servers with the measured policy and service-time model."""
    import simpy

    sim = _Simulation(simpy.Environment(), arrivals, queries, model, batching, seed)
    sim.env.process(sim.source())
    for _ in range(replicas):
        sim.env.process(sim.replica())
    sim.env.run()
    return sim.latency, sim.wait, sim.batches


class _Simulation:
    """One simpy run: a source of arrivals into one FIFO queue, and replicas that batch."""

    def __init__(self, env, arrivals, queries, model: ServiceModel, batching: Batching, seed):
        self.env, self.arrivals, self.queries = env, arrivals, queries
        self.model, self.batching = model, batching
        self.rng = np.random.default_rng(seed)
        self.queue: deque[int] = deque()
        self.latency = np.zeros(len(arrivals))
        self.wait = np.zeros(len(arrivals))
        self.batches: list[BatchRecord] = []
        self.signal = env.event()
        self.arrived = 0

    def source(self):
        for index, moment in enumerate(self.arrivals):
            yield self.env.timeout(max(0.0, moment - self.env.now))
            self.queue.append(index)
            self.arrived += 1
            signal, self.signal = self.signal, self.env.event()
            signal.succeed()

    def replica(self):
        env, queries, n = self.env, self.queries, len(self.arrivals)
        while True:
            while not self.queue:
                if self.arrived == n:
                    return
                yield self.signal
            batch = [self.queue.popleft()]
            yield from self._fill(batch)
            began = env.now
            pairs = sum(queries[i].pairs for i in batch)
            tokens = sum(queries[i].tokens for i in batch)
            service = self.model.draw_ms(len(batch), pairs, tokens, self.rng) / 1000
            yield env.timeout(service)
            self.batches.append(BatchRecord(len(batch), pairs, tokens, service * 1000))
            for i in batch:
                self.latency[i] = env.now - self.arrivals[i]
                self.wait[i] = began - self.arrivals[i]

    def _fill(self, batch: list[int]):
        """Add queued queries while they fit, until ``max_wait_ms`` after the first arrived
        (the same policy as :func:`evalkit.measure.load.serve`)."""
        env, queries, limit = self.env, self.queries, self.batching.max_batch_pairs
        pairs = queries[batch[0]].pairs
        deadline = self.arrivals[batch[0]] + self.batching.max_wait_ms / 1000
        while pairs < limit:
            if self.queue:
                if pairs + queries[self.queue[0]].pairs > limit:
                    break  # full: serve now
                batch.append(self.queue.popleft())
                pairs += queries[batch[-1]].pairs
                continue
            if env.now >= deadline:
                break
            if self.arrived == len(self.arrivals):
                yield env.timeout(deadline - env.now)  # as the real server: window open
                break
            yield self.signal | env.timeout(deadline - env.now)


def predict(
    shapes: Sequence[Query],
    model: ServiceModel,
    batching: Batching,
    qps: float,
    replicas: int = 1,
    count: int = 2000,
    seed: int = 0,
) -> LoadPoint:
    """The simulated load point at ``qps`` for ``replicas`` servers: ``count`` queries drawn
    (seeded, with replacement) from the measured query shapes."""
    rng = np.random.default_rng(seed)
    arrivals = poisson_arrivals(qps, count, rng)
    chosen = [shapes[int(i)] for i in rng.integers(len(shapes), size=count)]
    latency, wait, batches = simulate(arrivals, chosen, model, batching, replicas, seed)
    return summarise(qps, arrivals, latency, wait, batches, servers=replicas)


def p95_band(
    shapes: Sequence[Query],
    model: ServiceModel,
    batching: Batching,
    qps: float,
    count: int,
    seed: int = 0,
    runs: int = BAND_RUNS,
) -> tuple[float, float]:
    """The 5th and 95th percentiles of the p95 over ``runs`` simulated one-replica runs of
    ``count`` queries each: how far one measured run of that length may fall from the model
    by chance (a queue's p95 from a few hundred queries spreads widely near saturation)."""
    values = [
        predict(shapes, model, batching, qps, 1, count=count, seed=seed + 1 + i).p95_ms
        for i in range(runs)
    ]
    low, high = np.percentile(values, [5, 95])
    return float(low), float(high)
