"""``latency.load_qps``: a run's open-loop load curve, its fitted service model and the
simulator's check against it.

The mechanics (arrivals, batching, the queue) are :mod:`evalkit.measure.load`; the replica
simulation is :mod:`evalkit.measure.simulate`; this module runs them on a built pipeline.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from evalkit.config.schema import Config
from evalkit.measure.latency import latency_device, timed_sample
from evalkit.measure.load import Batching, Query, curve_summary, load_curve
from evalkit.measure.online import cuda_synchronizer
from evalkit.measure.shapes import rerank_shapes
from evalkit.measure.simulate import VALIDATION_TOLERANCE, ServiceModel, p95_band, predict
from evalkit.pipeline import StageRuns, TwoStage
from evalkit.rerank.base import head_pairs
from evalkit.retrieve.base import doc_texts_by_id
from evalkit.types import Dataset

LOAD_MODE = (
    "open loop: Poisson arrivals, one replica, dynamic batching (one FIFO queue; a batch "
    "closes when it holds max_batch_pairs pairs or max_wait_ms after its oldest query "
    "arrived; its queries' first stages then run and all their pairs are scored in one call)"
)


def measure_load(
    config: Config, pipeline: TwoStage, dataset: Dataset, runs: StageRuns
) -> dict | None:
    """The load curve of this system on one replica, the service-time model fitted to its
    batches, the simulated curves for 1, 2 and 4 replicas, and the one-replica validation;
    None without ``latency.load_qps``."""
    from tqdm.auto import tqdm

    lat = config.latency
    if not lat.load_qps:
        return None
    pipeline.ensure_indexed(dataset)
    sample = timed_sample(dataset)
    depth = config.pipeline.depth
    # each query's shape (pairs, tokens after truncation), from the evaluation's first stage
    known = rerank_shapes(pipeline, dataset, runs.first_stage, depth, clip=True)
    shapes = [Query(q, *known.get(q, (0, 0))) for q, _ in sample]
    run_batch = _batch_runner(pipeline, dataset, sample, depth)
    run_batch(list(range(min(4, len(sample)))))  # warm-up
    batching = Batching(lat.max_batch_pairs, lat.max_wait_ms)
    points = load_curve(
        sorted(lat.load_qps),
        shapes,
        run_batch,
        batching,
        lat.load_queries,
        seed=config.seed,
        max_seconds=lat.load_max_seconds,
        progress_factory=lambda qps, count: tqdm(
            total=count, desc=f"load @{qps:g} QPS", unit="query", disable=not config.show_progress
        ),
    )
    model = ServiceModel.fit([b for p in points for b in p.batches])
    simulated = _simulated(shapes, model, batching, points, config.seed)
    return {
        "mode": LOAD_MODE,
        "conditions": _conditions(config),
        "points": [p.to_dict() for p in points],
        **curve_summary(points),
        "service_model": model.to_dict(),
        "query_shapes": [[s.pairs, s.tokens] for s in shapes],
        "simulated": simulated,
        "validation": _validation(points, simulated["1"], shapes, model, batching, config.seed),
        "validation_tolerance": VALIDATION_TOLERANCE,
        "mean_tokens_per_query": float(np.mean([s.tokens for s in shapes])) if shapes else 0.0,
    }


def _batch_runner(
    pipeline: TwoStage, dataset: Dataset, sample: list, depth: int
) -> Callable[[list[int]], None]:
    """A function that serves a batch of sampled queries: first stages, then one scoring
    call for all their pairs (the queries a selective policy keeps send none)."""
    doc_text = doc_texts_by_id(dataset.corpus)
    stages = pipeline.online_stages(doc_text, depth, dataset.exclude_self)
    first_stages = [fn for name, fn in stages if name != "rerank"]
    scorer = pipeline.scorer
    sync = cuda_synchronizer(pipeline.device) or (lambda: None)

    def pairs_of(query):
        state = query
        for fn in first_stages:
            state = fn(state)
        (query_id, text), run = state
        if scorer is None or (
            pipeline.policy is not None and query_id not in pipeline.selected(run)
        ):
            return []
        return head_pairs(run, {query_id: text}, doc_text, depth)[1]

    def run_batch(indices: list[int]) -> None:
        pairs = [pair for i in indices for pair in pairs_of(sample[i])]
        if pairs:
            getattr(scorer, "score_online", scorer.score)(pairs)  # queries tokenized as served
        sync()

    return run_batch


def _simulated(shapes, model: ServiceModel, batching: Batching, points, seed: int) -> dict:
    simulated = {
        str(replicas): [
            predict(shapes, model, batching, p.offered_qps, replicas, seed=seed).to_dict()
            for p in points
        ]
        for replicas in (1, 2, 4)
    }
    for curve in simulated.values():
        for point in curve:
            point.pop("batches")
    return simulated


def _validation(points, predicted_points: list[dict], shapes, model, batching, seed) -> list[dict]:
    """Simulated vs measured p95 on one replica, at every rate that did not saturate: the
    relative error against the long simulated run, and whether the measured p95 lies in the
    band simulated runs of the measured length reach (5th-95th percentile)."""
    validation = []
    for measured, predicted in zip(points, predicted_points, strict=True):
        if measured.saturated:
            continue
        error = predicted["p95_ms"] / measured.p95_ms - 1
        band = p95_band(shapes, model, batching, measured.offered_qps, measured.queries, seed)
        validation.append(
            {
                "offered_qps": measured.offered_qps,
                "measured_p95_ms": measured.p95_ms,
                "simulated_p95_ms": predicted["p95_ms"],
                "relative_error": error,
                "within_tolerance": bool(abs(error) <= VALIDATION_TOLERANCE),
                "band_p95_ms": list(band),
                "within_band": bool(band[0] <= measured.p95_ms <= band[1]),
            }
        )
    return validation


def _conditions(config: Config) -> dict:
    torch = sys.modules.get("torch")  # a system without torch has no torch threads
    lat = config.latency
    return {
        "max_batch_pairs": lat.max_batch_pairs,
        "max_wait_ms": lat.max_wait_ms,
        "queries_per_rate": lat.load_queries,
        "max_seconds_per_rate": lat.load_max_seconds,
        "depth": config.pipeline.depth,
        "seed": config.seed,
        "device": latency_device(),
        "threads": torch.get_num_threads() if torch else None,
    }
