"""The open-loop load test and the replica simulator, against queueing theory and cases
worked by hand (a virtual clock and a fake scorer whose service time is known)."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.measure.load import Batching, Query, VirtualClock, poisson_arrivals, serve, summarise
from evalkit.measure.simulate import ServiceModel, predict, simulate


def fixed_service(clock: VirtualClock, seconds: float):
    batches = []

    def run_batch(indices):
        batches.append(list(indices))
        clock.advance(seconds)

    return run_batch, batches


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mean_wait_is_the_m_d_1_formula(rho):
    service, qps, count = 0.02, None, 40_000
    qps = rho / service
    clock = VirtualClock()
    run_batch, _ = fixed_service(clock, service)
    arrivals = poisson_arrivals(qps, count, np.random.default_rng(7))
    queries = [Query(str(i), pairs=10, tokens=100) for i in range(count)]
    latency, wait, _ = serve(arrivals, queries, run_batch, Batching(10, 0.0), clock)
    expected = qps * service**2 / (2 * (1 - rho))  # Pollaczek-Khinchine for M/D/1
    assert wait.mean() == pytest.approx(expected, rel=0.06)
    assert latency.mean() == pytest.approx(expected + service, rel=0.04)


def test_batches_close_when_full_or_when_the_window_ends():
    clock = VirtualClock()
    run_batch, batches = fixed_service(clock, 0.004)
    arrivals = [0.0, 0.001, 0.002, 0.050]
    queries = [Query(str(i), pairs=10, tokens=50) for i in range(4)]
    latency, _, records = serve(arrivals, queries, run_batch, Batching(30, 5.0), clock)
    # q0 opens a batch; q1, q2 arrive in its window and fill it (30 pairs): served at 2 ms
    assert batches == [[0, 1, 2], [3]]
    assert (latency * 1000).round(6).tolist() == [6.0, 5.0, 4.0, 9.0]  # q3 waits its window
    assert [(r.queries, r.pairs, r.tokens) for r in records] == [(3, 30, 150), (1, 10, 50)]

    clock = VirtualClock()
    run_batch, batches = fixed_service(clock, 0.004)
    latency, _, _ = serve([0.0, 0.003, 0.010], queries[:3], run_batch, Batching(100, 5.0), clock)
    # q2 arrives after q0's window (5 ms) closed: a batch of its own
    assert batches == [[0, 1], [2]]
    assert (latency * 1000).round(6).tolist() == [9.0, 6.0, 9.0]


def test_a_busy_server_takes_what_waited_without_waiting_more():
    clock = VirtualClock()
    run_batch, batches = fixed_service(clock, 0.010)
    queries = [Query(str(i), pairs=10, tokens=10) for i in range(4)]
    serve([0.0, 0.001, 0.002, 0.003], queries, run_batch, Batching(20, 0.0), clock)
    assert batches == [[0], [1, 2], [3]]  # at 10 ms q1..q3 waited; two fit


def test_the_simulator_reproduces_a_hand_computed_case():
    model = ServiceModel(fixed=15.0, per_query=0.0, per_pair=0.0, per_token=0.0)
    queries = [Query(str(i), pairs=10, tokens=10) for i in range(3)]
    one, _, _ = simulate([0.0, 0.010, 0.020], queries, model, Batching(10, 0.0), replicas=1)
    two, _, _ = simulate([0.0, 0.010, 0.020], queries, model, Batching(10, 0.0), replicas=2)
    assert (one * 1000).round(6).tolist() == [15.0, 20.0, 25.0]
    assert (two * 1000).round(6).tolist() == [15.0, 15.0, 15.0]


@pytest.mark.parametrize("qps", [20.0, 80.0, 200.0])
def test_at_one_replica_the_simulator_is_the_server(qps):
    """The same deterministic service model in the real loop (virtual clock) and in the
    simulation: the same batches and the same latencies, query by query."""
    model = ServiceModel(fixed=2.0, per_query=0.5, per_pair=0.05, per_token=0.001)
    rng = np.random.default_rng(3)
    count = 500
    arrivals = poisson_arrivals(qps, count, rng)
    queries = [
        Query(str(i), pairs=int(p), tokens=int(t))
        for i, (p, t) in enumerate(
            zip(rng.integers(5, 60, count), rng.integers(100, 9000, count), strict=True)
        )
    ]
    clock = VirtualClock()

    def run_batch(indices):
        batch = [queries[i] for i in indices]
        clock.advance(
            model.mean_ms(len(batch), sum(q.pairs for q in batch), sum(q.tokens for q in batch))
            / 1000
        )

    batching = Batching(128, 3.0)
    measured, _, real_batches = serve(arrivals, queries, run_batch, batching, clock)
    simulated, _, sim_batches = simulate(arrivals, queries, model, batching, replicas=1)
    assert np.allclose(measured, simulated, atol=1e-9)
    assert [b.queries for b in real_batches] == [b.queries for b in sim_batches]


def test_the_service_model_recovers_known_costs():
    from evalkit.measure.load import BatchRecord

    rng = np.random.default_rng(0)
    batches = []
    for _ in range(200):
        q, p, t = int(rng.integers(1, 8)), int(rng.integers(10, 400)), int(rng.integers(500, 40000))
        batches.append(BatchRecord(q, p, t, 3.0 + 1.5 * q + 0.2 * p + 0.002 * t))
    model = ServiceModel.fit(batches)
    assert [model.fixed, model.per_query, model.per_pair, model.per_token] == pytest.approx(
        [3.0, 1.5, 0.2, 0.002], rel=1e-6
    )


def test_more_replicas_lower_the_tail_and_saturation_is_flagged():
    model = ServiceModel(fixed=10.0, per_query=0.0, per_pair=0.0, per_token=0.0)
    shapes = [Query("q", pairs=10, tokens=100)]
    batching = Batching(10, 0.0)  # no batching: one server does 100 QPS at most
    over = predict(shapes, model, batching, qps=150, replicas=1, count=3000)
    assert over.saturated
    two = predict(shapes, model, batching, qps=150, replicas=2, count=3000)
    assert not two.saturated and two.p95_ms < over.p95_ms
    calm = predict(shapes, model, batching, qps=20, replicas=1, count=3000)
    assert not calm.saturated and calm.p50_ms == pytest.approx(10.0, abs=0.01)


def test_summary_of_a_saturated_run():
    arrivals = np.arange(100) * 0.01  # 100 QPS offered
    latency = (np.arange(100) + 1) * 0.02 - arrivals  # served at 50 QPS
    point = summarise(100.0, arrivals, latency, latency - 0.02, [])
    assert point.saturated and point.achieved_qps == pytest.approx(50.0)


def test_a_server_that_cannot_keep_up_is_stopped_and_counted():
    clock = VirtualClock()
    run_batch, batches = fixed_service(clock, 1.0)  # one query per second at most
    arrivals = np.arange(50) * 0.1  # 10 QPS offered
    queries = [Query(str(i), pairs=10, tokens=10) for i in range(50)]
    latency, wait, records = serve(
        arrivals, queries, run_batch, Batching(10, 0.0), clock, stop_after=3.0
    )
    assert len(batches) == 4  # batches start at 0, 1, 2, 3 s; none after 3 s
    assert int(np.isnan(latency).sum()) == 46
    point = summarise(10.0, arrivals, latency, wait, records)
    assert point.saturated and point.unfinished == 46
    # served: done at 1, 2, 3, 4 s; the rest count as waiting until the last completion (4 s),
    # a lower bound of their latency
    by_hand = [1.0, 1.9, 2.8, 3.7] + [max(4.0 - 0.1 * i, 0.0) for i in range(4, 50)]
    assert point.p95_ms == pytest.approx(np.percentile(by_hand, 95) * 1000)


def test_the_p95_band_of_runs_of_one_length():
    """A queue's p95 from a few hundred queries spreads: the band of same-length simulated
    runs holds the long-run p95, narrows as runs lengthen, and is one value where nothing
    queues (fixed service, arrivals far apart)."""
    from evalkit.measure.simulate import p95_band

    model = ServiceModel(fixed=10.0, per_query=0.0, per_pair=0.0, per_token=0.0)
    shapes = [Query("q", pairs=10, tokens=100)]
    batching = Batching(10, 0.0)  # one query per batch: an M/D/1 queue at 10 ms
    long_run = predict(shapes, model, batching, qps=50, count=40_000).p95_ms
    short = p95_band(shapes, model, batching, qps=50, count=200)
    longer = p95_band(shapes, model, batching, qps=50, count=3000)
    assert short[0] < long_run < short[1]
    assert longer[0] < long_run < longer[1]
    assert longer[1] - longer[0] < (short[1] - short[0]) / 2  # about 1/sqrt(15) as wide
    assert short[1] < 3 * long_run  # a p95 three times the model's is outside it
    calm = p95_band(shapes, model, batching, qps=0.01, count=50)
    assert calm == pytest.approx((10.0, 10.0), abs=1e-6)


def test_the_summary_says_whether_measured_p95s_lie_in_the_band():
    from evalkit.analysis.summary import _load_lines
    from evalkit.results.run_records import LoadCurve, SimulatorCheck

    def curve(*checks):
        return LoadCurve((), 64, 20.0, 0, {}, (), validation=checks, validation_tolerance=0.15)

    inside = _load_lines(curve(SimulatorCheck(1.0, 0.08, True), SimulatorCheck(2.0, 0.28, True)))
    assert inside[-1] == (
        "simulator check at one replica: worst p95 error 28% (outside 15%); every measured "
        "p95 inside the range (5-95%) of simulated runs of the same length"
    )
    outside = _load_lines(curve(SimulatorCheck(1.0, 0.08, True), SimulatorCheck(3.0, 0.5, False)))
    assert outside[-1].endswith("outside the range of simulated runs of the same length at 3 QPS")
    old = _load_lines(curve(SimulatorCheck(1.0, 0.05)))  # a load.json without the band
    assert old[-1] == "simulator check at one replica: worst p95 error 5% (within 15%)"
