"""A run's latency: offline throughput and the online (closed-loop) pass, with conditions.

``latency.json`` holds two modes, never mixed: ``offline`` (the batched evaluation and the
sustained pairs/s of :func:`~evalkit.measure.throughput.pair_throughput`) and ``online``
(one query at a time per worker, per stage, timed by
:func:`~evalkit.measure.online.measure_online`).
"""

from __future__ import annotations

import logging

import pandas as pd

from evalkit.config.schema import Config
from evalkit.measure.machine import LoadProbe, timing_threads, torch_threads
from evalkit.measure.online import cuda_synchronizer, measure_online, p95_decided
from evalkit.measure.throughput import pair_throughput
from evalkit.pipeline import StageRuns, TwoStage
from evalkit.rerank.base import head_pairs
from evalkit.retrieve.base import doc_texts_by_id
from evalkit.types import QUERY_ID, Dataset

log = logging.getLogger(__name__)


def latency_device() -> str:
    """The accelerator, or the CPU, the timings ran on."""
    from evalkit.env import hardware

    info = hardware()
    return info["gpu"] or info["cpu"]


def measure_latency(config: Config, pipeline: TwoStage, dataset: Dataset, runs: StageRuns) -> dict:
    """Offline throughput (the run's own pairs, uncached) and the online latency pass."""
    doc_text = doc_texts_by_id(dataset.corpus)  # built once for every measurement below
    latency: dict = {"offline": _offline(config, pipeline, dataset, runs, doc_text), "online": None}
    if not config.latency.enabled:
        return latency
    pipeline.ensure_indexed(dataset)  # a cached first-stage run skipped indexing
    sample = timed_sample(dataset, config.latency.max_queries, seed=config.seed)
    curve = [
        _online_at(config, pipeline, dataset, sample, doc_text, depth)
        for depth in config.latency.depths or [config.pipeline.depth]
    ]
    main = next((c for c in curve if c["depth"] == config.pipeline.depth), curve[-1])
    latency["online"] = {
        **main["stages"],
        "per_query_ms": main["per_query_ms"],
        **({"rerank_split": main["rerank_split"]} if main["rerank_split"] else {}),
        "conditions": {
            **latency_conditions(config, pipeline, sample, main, doc_text),
            "machine": main["machine"],
        },
        "mode": "closed loop, one query at a time per worker, warm-up excluded",
    }
    predicted = _predicted(config, pipeline, dataset, runs, sample, main)
    if predicted is not None:
        latency["online"]["predicted_all_queries"] = predicted
    if pipeline.scorer is not None:
        latency["online"]["first_stage_alone"] = _first_stage_alone(
            config, pipeline, dataset, sample[: main["measured"]], doc_text
        )
    if len(curve) > 1:
        latency["depth_curve"] = [{"depth": c["depth"], "stages": c["stages"]} for c in curve]
    return latency


def _predicted(
    config: Config, pipeline: TwoStage, dataset: Dataset, runs: StageRuns, sample, main: dict
) -> dict | None:
    """The p95 over every query predicted from its own pairs and tokens, with its check
    on the timed queries (:mod:`evalkit.measure.prediction`); None without a reranker."""
    if pipeline.scorer is None or runs.first_stage is None or not main["measured"]:
        return None
    from evalkit.measure.prediction import predict_p95
    from evalkit.measure.shapes import rerank_shapes

    try:  # user code (a plugin's token_lengths) runs here: the measured numbers stand alone
        shapes = rerank_shapes(pipeline, dataset, runs.first_stage, main["depth"], clip=True)
        ids = dataset.queries[QUERY_ID].astype(str).tolist()
        return predict_p95(main["frame"], sample, shapes, ids)
    except Exception as error:  # an auxiliary estimate never fails a run
        log.warning(
            "no predicted p95 over all queries (%s: %s); the measured p95 is unaffected",
            type(error).__name__,
            error,
        )
        return None


def _first_stage_alone(
    config: Config, pipeline: TwoStage, dataset: Dataset, sample: list, doc_text: dict
) -> dict:
    """The first stage timed on its own, on the same queries and threads: a first stage's
    latency is measured the same way wherever it appears (inside the reranked pass it
    shares caches and cores with the reranker, and reads 5-10x slower)."""
    stages = [
        stage
        for stage in pipeline.online_stages(doc_text, config.pipeline.depth, dataset.exclude_self)
        if stage[0] != "rerank"
    ]
    with torch_threads(timing_threads(config.latency.threads)):
        result = measure_online(
            stages,
            sample,
            warmup=config.latency.warmup,
            synchronize=cuda_synchronizer(pipeline.device),
            max_seconds=config.latency.max_seconds,
        )
    per_query = result.per_query
    return {
        "stages": result.summary(),
        "per_query_ms": {
            stage: group["ms"].tolist() for stage, group in per_query.groupby("stage", sort=False)
        },
        "mode": "the first stage alone, same queries and threads, after the reranked pass",
    }


def timed_sample(
    dataset: Dataset, limit: int | None = None, seed: int | None = None
) -> list[tuple[str, str]]:
    """``(query_id, text)`` of the queries to time, at most ``limit``: with ``seed``, a
    seeded shuffle of the whole query set (a prefix of it is a uniform sample, whatever
    the ids say about the queries) -- a set smaller than ``limit`` is timed again, in a new
    order each round, until the sample is full (86 timed queries can bound a p95; a
    4-query collection could never reach that once); without ``seed``, query-id order."""
    import numpy as np

    ordered = dataset.queries.sort_values(QUERY_ID, kind="stable")
    pairs = list(zip(ordered[QUERY_ID].astype(str), ordered["text"].astype(str), strict=True))
    if seed is None or not pairs:
        return pairs[:limit] if limit is not None else pairs
    rng = np.random.default_rng(seed)
    wanted = len(pairs) if limit is None else limit
    sample: list[tuple[str, str]] = []
    while len(sample) < wanted:
        sample += [pairs[i] for i in rng.permutation(len(pairs))]
    return sample[:wanted]


def _offline(
    config: Config, pipeline: TwoStage, dataset: Dataset, runs: StageRuns, doc_text: dict
) -> dict:
    offline = {
        **runs.throughput,
        "mode": "whole query set in batches, as the quality evaluation ran it",
        "num_queries": len(dataset.queries),
    }
    if runs.rerank_stats:
        offline["rerank_pairs_scored_in_evaluation"] = runs.rerank_stats.get("pairs_scored")
    offline.update(
        pair_throughput(
            pipeline,
            runs.first_stage,
            dataset.queries,
            doc_text,
            config.latency.throughput_pairs,
            seed=config.seed,
            synchronize=cuda_synchronizer(pipeline.device),
        )
    )
    return offline


def _online_at(
    config: Config, pipeline: TwoStage, dataset: Dataset, sample: list, doc_text: dict, depth: int
) -> dict:
    """One closed-loop pass at ``depth``."""
    from tqdm.auto import tqdm

    threads = timing_threads(config.latency.threads)
    take_split = getattr(pipeline.scorer, "take_split", None)
    if take_split is not None:
        take_split()  # start the split at this pass
    with (
        tqdm(
            total=len(sample),
            desc=f"latency @{depth}",  # the end says why it stopped
            unit="query",
            disable=not config.show_progress,
        ) as bar,
        torch_threads(threads),
        LoadProbe(threads) as probe,
    ):
        result = measure_online(
            pipeline.online_stages(doc_text, depth, dataset.exclude_self),
            sample,
            warmup=config.latency.warmup,
            concurrency=config.latency.concurrency,
            synchronize=cuda_synchronizer(pipeline.device),
            max_seconds=config.latency.max_seconds,
            progress=bar.update,
            stop_when=_stopping_rule(config.latency.target_p95_ms),
        )
        _say_why_it_stopped(bar, config, result, len(sample), depth)
    per_query_ms = {
        stage: group["ms"].tolist()
        for stage, group in result.per_query.groupby("stage", sort=False)
    }
    if probe.result.busy:
        log.warning(
            "latency @%d was timed while other processes used %.0f%% of the CPUs: the numbers "
            "may be inflated (latency.json -> conditions.machine)",
            depth,
            100 * probe.result.other_processes_cpu_share,
        )
    return {
        "depth": depth,
        "stages": result.summary(),
        "rerank_split": take_split().to_dict() if take_split is not None else {},
        "per_query_ms": per_query_ms,
        "frame": result.per_query,  # for the prediction; not written
        "measured": result.measured,
        "machine": probe.result.to_dict(),
    }


def _say_why_it_stopped(bar, config: Config, result, planned: int, depth: int) -> None:
    """A pass that stopped before its sample ends its bar on why ("p95 decided", or "time
    budget reached", not a count that reads as an abort); the time budget is also a warning,
    since the p95 is then undecided."""
    if result.measured >= planned:
        return
    totals = result.per_query[result.per_query.stage == "total"]["ms"].tolist()
    decided = p95_decided(totals, config.latency.target_p95_ms)
    why = "p95 decided" if decided else "time budget reached"
    bar.set_description(f"latency @{depth} ({why}: {result.measured}/{planned} queries timed)")
    bar.total = result.measured
    bar.refresh()
    if decided:
        return
    log.warning(
        "latency @%d: time budget reached (latency.max_seconds=%g): %d/%d queries "
        "timed, too few to decide%s",
        depth,
        config.latency.max_seconds,
        result.measured,
        planned,
        f" against {config.latency.target_p95_ms} ms"
        if config.latency.target_p95_ms
        else " whether p95 fits a budget (86 queries can)",
    )


def _stopping_rule(targets: list[float]):
    """With ``latency.target_p95_ms``, stop timing once the p95's CI is clear of every
    target; without, time up to ``max_queries`` (or the time budget)."""
    if not targets:
        return None
    return lambda totals: p95_decided(totals, targets)


def latency_conditions(
    config: Config, pipeline: TwoStage, sample: list, point: dict, doc_text: dict
) -> dict:
    """What the latency numbers were measured under, recorded beside them."""

    lat, rr = config.latency, config.reranker
    conditions = {
        "device": latency_device(),
        "threads": point["machine"]["threads"],
        "concurrency": lat.concurrency,
        "sample_queries": point["measured"],
        "sample_queries_asked": len(sample),
        "max_seconds": lat.max_seconds,
        "warmup_queries": lat.warmup,
        "depth": point["depth"],
        "first_stage_k": config.pipeline.first_stage_k,
        "retriever": config.retriever.name,
        "retriever_batch_size": config.retriever.batch_size,
        "reranker": rr.name,
        "reranker_weights": rr.weights,
        "reranker_dtype": rr.dtype,
        "reranker_backend": rr.backend,
        "reranker_batch_size": rr.batch_size,
        "max_length": rr.max_length,
        "clock": "time.perf_counter_ns; cuda synchronised at stage boundaries",
    }
    if pipeline.scorer is not None:
        conditions.update(_measured_pairs(pipeline, sample[: point["measured"]], point, doc_text))
    return conditions


def _measured_pairs(pipeline: TwoStage, measured: list, point: dict, doc_text: dict) -> dict:
    """Token statistics of the pairs the timed queries sent to the reranker."""
    import numpy as np

    queries = pd.DataFrame({QUERY_ID: [q for q, _ in measured], "text": [t for _, t in measured]})
    run = pipeline.retriever.search(queries, point["depth"])
    _, pairs, _ = head_pairs(run, dict(measured), doc_text, point["depth"])
    lengths = pipeline.scorer.token_lengths(pairs)
    if not len(lengths):
        return {}
    limit = pipeline.scorer.max_length or int(lengths.max())
    return {
        "mean_tokens_per_pair": float(np.minimum(lengths, limit).mean()),
        "truncated_pairs": int((lengths > limit).sum()),
        "pairs_measured": len(pairs),
    }
