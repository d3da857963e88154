"""One experiment, end to end: config -> objects -> runs -> measures -> :class:`RunResult`.

Steps: validate the config; claim the run folder (one writer at a time); load the data;
resume when the folder is finished for the same config, data content and code; otherwise
run the two stages, evaluate, time, and save the :class:`~evalkit.results.RunResult`
(every file atomic, the completion marker last).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from evalkit.cache import PairScoreCache, digest
from evalkit.config import Config, build_retriever, build_scorer, cache_dir, validate
from evalkit.data import content_digest, load_dataset
from evalkit.env import code_version, environment
from evalkit.errors import ConfigError, problem
from evalkit.faults import checkpoint
from evalkit.io import write_json
from evalkit.measures import CONTRACT, evaluate, parse_measures, unique_measures
from evalkit.pipeline import StageRuns, TwoStage
from evalkit.results import Identity, RunResult, completion, remove_results
from evalkit.retrieve.base import doc_texts_by_id
from evalkit.selective import Policy
from evalkit.timing import cuda_synchronizer, measure_online
from evalkit.types import QUERY_ID, Dataset

log = logging.getLogger(__name__)

NON_SEMANTIC = ("show_progress", "verbose")
# settings that do not change a system's numbers (left out of its identity)
NOT_IDENTITY = {
    "batch_size",
    "device",
    "shard_size",
    "shard_job",
    "chunk_size",
    "trust_remote_code",
    "allow_remote_code",
    "api_key_env",
    "concurrency",
    "timeout_s",
    "max_retries",
    "backoff_s",
}


def config_hash(config: Config) -> str:
    """Hash of everything in the config that can change a result."""
    data = asdict(config)
    for key in NON_SEMANTIC:
        data.pop(key, None)
    data["cache"].pop("dir", None)
    return digest(json.dumps(data, sort_keys=True))


@contextmanager
def claim_folder(folder: Path) -> Iterator[None]:
    """One writer per run folder: a second run into the same folder fails at once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder.parent / f".{folder.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            problem(
                f"another evalkit run is writing into {folder}",
                "hydra.run.dir",
                "wait for it to finish, or choose another hydra.run.dir",
            )
        ) from None
    try:
        yield
    finally:
        lock.release()


def identity_of(config: Config, dataset: Dataset, data_key: str, pipeline: TwoStage) -> Identity:
    """Everything that changes this run's numbers (see :class:`~evalkit.results.Identity`)."""

    def settings(section, fingerprint: str) -> dict:
        values = {k: v for k, v in asdict(section).items() if k not in NOT_IDENTITY}
        return {**values, "fingerprint": fingerprint}

    reranked = pipeline.scorer is not None
    return Identity(
        dataset={
            "name": dataset.name,
            "content": data_key,
            "split": dataset.split,
            "relevance_level": dataset.relevance_level,
            "exclude_self": dataset.exclude_self,
        },
        retriever=settings(config.retriever, pipeline.retriever.fingerprint),
        first_stage_k=config.pipeline.first_stage_k,
        contract=digest(json.dumps(CONTRACT, sort_keys=True)),
        reranker=(
            {
                **settings(config.reranker, pipeline.scorer.fingerprint),
                "policy": str(pipeline.policy) if pipeline.policy else "none",
            }
            if reranked
            else None
        ),
        depth=config.pipeline.depth if reranked else None,
    )


def run_experiment(cfg, output_dir: str | Path) -> RunResult:
    """Run one configured experiment into ``output_dir`` and return its result.

    A folder already finished for the same config, data content and code version is
    returned as it is (resume); one finished for a different config is refused, never
    overwritten.
    """
    config = validate(cfg)
    folder = Path(output_dir)
    parse_measures(config.eval.metrics)  # fail fast on a bad measure name
    if config.retriever.shard_job is not None:
        raise ConfigError(
            problem(
                "retriever.shard_job encodes corpus shards only; it has no result to return",
                "retriever.shard_job",
                "call evalkit.runner.encode_shards (evalkit-run does this for you)",
            )
        )
    with claim_folder(folder):
        chash, version = config_hash(config), code_version()
        done = completion(folder)
        if done is not None and done.get("config_hash") != chash:
            raise ConfigError(
                problem(
                    f"{folder} holds a finished run of a different config "
                    f"(hash {done.get('config_hash')}, this one {chash})",
                    "hydra.run.dir",
                    "choose another hydra.run.dir, or delete the folder",
                )
            )
        started = time.perf_counter()
        dataset = load_dataset(config.dataset, cache_dir(config))
        data_key = content_digest(dataset)
        if done is not None:
            if done.get("data_digest") == data_key and done.get("code_version") == version:
                log.info("%s is complete for this config and data; skipping", folder)
                return RunResult.load(folder)
            log.warning(
                "%s was made from other %s: recomputing",
                folder,
                "data" if done.get("data_digest") != data_key else "code",
            )
        remove_results(folder)
        checkpoint("after_cleanup")
        result = _run(config, dataset, data_key)
        result.save(
            folder,
            {
                "config_hash": chash,
                "data_digest": data_key,
                "code_version": version,
                "seconds": time.perf_counter() - started,
            },
        )
        return result


def _run(config: Config, dataset: Dataset, data_key: str) -> RunResult:
    asked = unique_measures(parse_measures(config.eval.metrics, dataset.relevance_level))
    [at_depth] = parse_measures([f"R@{config.pipeline.depth}"], dataset.relevance_level)
    pipeline = build_pipeline(config)
    cost_only = config.reranker.weights == "random" or config.retriever.weights == "random"
    runs = pipeline.run(
        dataset, rerank_queries=not (cost_only and not config.eval.cost_only_quality)
    )
    checkpoint("after_runs")
    metrics, per_query = _evaluate(config, dataset, runs, asked, at_depth, cost_only)
    latency = measure_latency(config, pipeline, dataset, runs)
    if hasattr(pipeline.scorer, "request_stats"):  # a remote second stage: its requests
        latency["requests"] = {
            **pipeline.scorer.request_stats(),
            "scope": "every request this run sent (evaluation, throughput, online pass)",
        }
    cost = _cost(config, pipeline, dataset, runs)
    if cost:
        metrics["cost"] = cost
    load = measure_load(config, pipeline, dataset, runs)
    identity = identity_of(config, dataset, data_key, pipeline)
    from omegaconf import OmegaConf

    from evalkit.retrieve.base import document_texts
    from evalkit.selective import query_features

    return RunResult(
        identity=identity,
        config=OmegaConf.to_container(OmegaConf.structured(config)),
        metrics=metrics,
        per_query=per_query,
        latency=latency,
        env=environment(
            {
                "retriever": pipeline.retriever.fingerprint,
                "reranker": pipeline.scorer.fingerprint if pipeline.scorer else None,
            }
        ),
        runs={
            stage: run
            for stage, run in (("first_stage", runs.first_stage), ("reranked", runs.reranked))
            if run is not None
        },
        query_features=query_features(dataset.queries, document_texts(dataset.corpus)),
        load_curve=load,
    )


def _cost(config: Config, pipeline: TwoStage, dataset: Dataset, runs: StageRuns) -> dict:
    """Dollars per 1,000 queries when the reranker has a price (see evalkit.pricing)."""
    from evalkit.pricing import price

    rr = config.reranker
    if pipeline.scorer is None or (
        rr.price_per_1k_searches is None and rr.price_per_1m_tokens is None
    ):
        return {}
    shapes = rerank_shapes(pipeline, dataset, runs.first_stage, config.pipeline.depth)
    ids = dataset.queries[QUERY_ID].astype(str)
    return price(
        rr,
        [shapes.get(q, (0, 0))[0] for q in ids],
        [shapes.get(q, (0, 0))[1] for q in ids],
    )


def rerank_shapes(
    pipeline: TwoStage, dataset: Dataset, first_stage: pd.DataFrame, depth: int, clip: bool = False
) -> dict[str, tuple[int, int]]:
    """``query_id -> (pairs, tokens)`` the second stage receives for each query of the
    evaluation's first stage: its top ``depth`` candidates (none for a query the selective
    policy keeps unreranked) and their summed ``token_lengths`` (cut at the scorer's
    max_length with ``clip``). Queries without pairs are absent."""
    from evalkit.rerank.base import head_pairs
    from evalkit.retrieve.base import query_texts_by_id

    scorer = pipeline.scorer
    if scorer is None:
        return {}
    chosen = pipeline.selected(first_stage, dataset)
    head, pairs, _ = head_pairs(
        first_stage[first_stage[QUERY_ID].astype(str).isin(chosen)],
        query_texts_by_id(dataset.queries),
        doc_texts_by_id(dataset.corpus),
        depth,
    )
    if not pairs:
        return {}
    tokens = pd.Series(scorer.token_lengths(pairs), index=head.index, dtype="int64")
    if clip and scorer.max_length:
        tokens = tokens.clip(upper=scorer.max_length)
    by_query = tokens.groupby(head[QUERY_ID].astype(str))
    counts, totals = by_query.size(), by_query.sum()
    return {str(q): (int(counts[q]), int(totals[q])) for q in counts.index}


def build_pipeline(config: Config) -> TwoStage:
    """The configured two-stage system with its caches."""
    cache = cache_dir(config)
    return TwoStage(
        build_retriever(config),
        build_scorer(config),
        depth=config.pipeline.depth,
        first_stage_k=config.pipeline.first_stage_k,
        pair_cache=PairScoreCache(cache / "pair_scores.sqlite") if config.cache.enabled else None,
        # a run file is its own cache (and reading it again recounts its warnings)
        run_cache_dir=(
            cache / "runs"
            if config.cache.enabled and config.retriever.kind not in ("run_file", "top_ranked")
            else None
        ),
        show_progress=config.show_progress,
        policy=Policy.parse(config.pipeline.policy),
    )


def _evaluate(
    config: Config, dataset: Dataset, runs: StageRuns, asked: list, at_depth, cost_only: bool
) -> tuple[dict, pd.DataFrame]:
    """``metrics.json``'s content (the asked measures) and the per-query table (the asked
    measures plus the recall at depth, each once)."""
    measures = unique_measures([*asked, at_depth])
    depth_name = str(at_depth)
    shown = [str(m) for m in asked]
    first = evaluate(runs.first_stage, dataset.qrels, measures)
    frames = [first.per_query.assign(stage="first_stage")]
    metrics: dict = {
        "first_stage": {m: first.aggregate[m] for m in shown},
        "dataset": dataset.name,
        "num_queries": first.num_queries,
        "recall_at_depth": {"measure": depth_name, "value": first.aggregate[depth_name]},
    }
    if runs.reranked is not None:
        second = evaluate(runs.reranked, dataset.qrels, measures)
        metrics["reranked"] = {m: second.aggregate[m] for m in shown}
        frames.append(second.per_query.assign(stage="reranked"))
        if runs.rerank_stats.get("policy"):
            metrics["policy"] = runs.rerank_stats["policy"]
        metrics["reranker_health"] = {
            k: runs.rerank_stats.get(k)
            for k in (
                "degenerate",
                "constant_score_fraction",
                "queries_with_constant_scores",
                "tie_rate",
            )
        }
    metrics["quality_meaningful"] = not cost_only
    if cost_only:
        metrics["quality_note"] = "random (cost-only) weights: latency and throughput only; " + (
            "the reranked quality pass was skipped (eval.cost_only_quality=true runs it)"
            if runs.reranked is None and config.reranker.kind != "none"
            else "quality numbers are a plumbing check, not a measurement of the model"
        )
    metrics["data_warnings"] = {**dataset.warnings, **runs.retriever_warnings}
    metrics["contract"] = {
        **CONTRACT,
        "relevance_level": dataset.relevance_level,
        "exclude_self": dataset.exclude_self,
        "split": dataset.split,
        "first_stage_k": config.pipeline.first_stage_k,
        "depth": config.pipeline.depth,
    }
    per_query = pd.concat(frames, ignore_index=True)
    return metrics, per_query[["stage", QUERY_ID, "measure", "value"]]


def encode_shards(cfg, output_dir: str | Path) -> dict:
    """``retriever.shard_job=i/n``: encode this job's corpus shards into the cache, stop.

    Returns the summary written to ``encode.json`` (a shard job has no result folder).
    """
    config = validate(cfg)
    if config.retriever.shard_job is None:
        raise ConfigError(problem("encode_shards needs retriever.shard_job=i/n"))
    folder = Path(output_dir)
    with claim_folder(folder):
        index, count = (int(x) for x in config.retriever.shard_job.split("/"))
        dataset = load_dataset(config.dataset, cache_dir(config))
        started = time.perf_counter()
        build_retriever(config).encode_corpus_shards(dataset.corpus, (index, count))
        summary = {
            "encoded": f"shards {index} mod {count} of {config.retriever.shard_size} texts",
            "seconds": time.perf_counter() - started,
            "documents": len(dataset.corpus),
        }
        write_json(folder / "encode.json", summary)
    return summary


def measure_latency(config: Config, pipeline: TwoStage, dataset: Dataset, runs) -> dict:
    """Offline throughput (the run's own pairs, uncached) and the online latency pass."""
    doc_text = doc_texts_by_id(dataset.corpus)  # built once for every measurement below
    sync = cuda_synchronizer(pipeline.device)
    offline = {
        **runs.throughput,
        "mode": "whole query set in batches, as the quality evaluation ran it",
        "num_queries": len(dataset.queries),
    }
    if runs.rerank_stats:
        offline["rerank_pairs_scored_in_evaluation"] = runs.rerank_stats.get("pairs_scored")
    offline.update(
        pipeline.pair_throughput(
            runs.first_stage,
            dataset.queries,
            doc_text,
            config.latency.throughput_pairs,
            seed=config.seed,
            synchronize=sync,
        )
    )
    latency: dict = {"offline": offline, "online": None}
    if not config.latency.enabled:
        return latency
    pipeline.ensure_indexed(dataset)  # a cached first-stage run skipped indexing
    ordered = dataset.queries.sort_values(QUERY_ID, kind="stable")
    sample = list(zip(ordered[QUERY_ID].astype(str), ordered["text"].astype(str), strict=True))[
        : config.latency.max_queries
    ]
    from tqdm.auto import tqdm

    curve = []
    for depth in config.latency.depths or [config.pipeline.depth]:
        with tqdm(
            total=len(sample),
            desc=f"latency @{depth}",
            unit="query",
            disable=not config.show_progress,
        ) as bar:
            result = measure_online(
                pipeline.online_stages(doc_text, depth, dataset.exclude_self),
                sample,
                warmup=config.latency.warmup,
                concurrency=config.latency.concurrency,
                synchronize=sync,
                max_seconds=config.latency.max_seconds,
                progress=bar.update,
            )
        per_query_ms = {
            stage: group["ms"].tolist()
            for stage, group in result.per_query.groupby("stage", sort=False)
        }
        curve.append(
            {
                "depth": depth,
                "stages": result.summary(),
                "per_query_ms": per_query_ms,
                "measured": result.measured,
            }
        )
    main = next((c for c in curve if c["depth"] == config.pipeline.depth), curve[-1])
    latency["online"] = {
        **main["stages"],
        "per_query_ms": main["per_query_ms"],
        "conditions": latency_conditions(config, pipeline, sample, main, doc_text),
        "mode": "closed loop, one query at a time per worker, warm-up excluded",
    }
    if len(curve) > 1:
        latency["depth_curve"] = [{"depth": c["depth"], "stages": c["stages"]} for c in curve]
    return latency


def latency_conditions(
    config: Config, pipeline: TwoStage, sample: list, point: dict, doc_text: dict
) -> dict:
    """What the latency numbers were measured under, recorded beside them."""
    import numpy as np
    import torch

    from evalkit.env import hardware
    from evalkit.rerank.base import head_pairs

    info = hardware()
    conditions = {
        "device": info["gpu"] or info["cpu"],
        "threads": torch.get_num_threads(),
        "concurrency": config.latency.concurrency,
        "sample_queries": point["measured"],
        "sample_queries_asked": len(sample),
        "max_seconds": config.latency.max_seconds,
        "warmup_queries": config.latency.warmup,
        "depth": point["depth"],
        "first_stage_k": config.pipeline.first_stage_k,
        "retriever": config.retriever.name,
        "retriever_batch_size": config.retriever.batch_size,
        "reranker": config.reranker.name,
        "reranker_weights": config.reranker.weights,
        "reranker_dtype": config.reranker.dtype,
        "reranker_backend": config.reranker.backend,
        "reranker_batch_size": config.reranker.batch_size,
        "max_length": config.reranker.max_length,
        "clock": "time.perf_counter_ns; cuda synchronised at stage boundaries",
    }
    scorer = pipeline.scorer
    if scorer is not None:
        measured = sample[: point["measured"]]
        queries = pd.DataFrame(
            {QUERY_ID: [q for q, _ in measured], "text": [t for _, t in measured]}
        )
        run = pipeline.retriever.search(queries, point["depth"])
        _, pairs, _ = head_pairs(run, dict(measured), doc_text, point["depth"])
        lengths = scorer.token_lengths(pairs)
        if len(lengths):
            limit = scorer.max_length or int(lengths.max())
            conditions["mean_tokens_per_pair"] = float(np.minimum(lengths, limit).mean())
            conditions["truncated_pairs"] = int((lengths > limit).sum())
            conditions["pairs_measured"] = len(pairs)
    return conditions


def measure_load(config: Config, pipeline: TwoStage, dataset: Dataset, runs) -> dict | None:
    """``latency.load_qps``: the open-loop load curve of this system on one replica, the
    service-time model fitted to its batches, the simulated curves for 1, 2 and 4
    replicas, and the one-replica validation (see :mod:`evalkit.load`, :mod:`evalkit.simulate`).
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from evalkit.load import Batching, Query, curve_summary, load_curve
    from evalkit.rerank.base import head_pairs
    from evalkit.simulate import VALIDATION_TOLERANCE, ServiceModel, predict

    lat = config.latency
    if not lat.load_qps:
        return None
    doc_text = doc_texts_by_id(dataset.corpus)
    pipeline.ensure_indexed(dataset)
    ordered = dataset.queries.sort_values(QUERY_ID, kind="stable")
    sample = list(zip(ordered[QUERY_ID].astype(str), ordered["text"].astype(str), strict=True))
    stages = pipeline.online_stages(doc_text, config.pipeline.depth, dataset.exclude_self)
    first_stages = [fn for name, fn in stages if name != "rerank"]
    scorer, depth = pipeline.scorer, config.pipeline.depth
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

    # each query's shape (pairs, tokens after truncation), from the evaluation's first stage
    known = rerank_shapes(pipeline, dataset, runs.first_stage, depth, clip=True)
    shapes = [Query(q, *known.get(q, (0, 0))) for q, _ in sample]

    def run_batch(indices: list[int]) -> None:
        pairs = [pair for i in indices for pair in pairs_of(sample[i])]
        if pairs:
            scorer.score(pairs)
        sync()

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
    simulated = {
        str(replicas): [
            predict(shapes, model, batching, p.offered_qps, replicas, seed=config.seed).to_dict()
            for p in points
        ]
        for replicas in (1, 2, 4)
    }
    for curve in simulated.values():
        for point in curve:
            point.pop("batches")
    validation = []
    for measured, predicted in zip(points, simulated["1"], strict=True):
        if measured.saturated:
            continue
        error = predicted["p95_ms"] / measured.p95_ms - 1
        validation.append(
            {
                "offered_qps": measured.offered_qps,
                "measured_p95_ms": measured.p95_ms,
                "simulated_p95_ms": predicted["p95_ms"],
                "relative_error": error,
                "within_tolerance": bool(abs(error) <= VALIDATION_TOLERANCE),
            }
        )
    return {
        "mode": (
            "open loop: Poisson arrivals, one replica, dynamic batching (one FIFO queue; a batch "
            "closes when it holds max_batch_pairs pairs or max_wait_ms after its oldest query "
            "arrived; its queries' first stages then run and all their pairs are scored in one "
            "call)"
        ),
        "conditions": {
            "max_batch_pairs": lat.max_batch_pairs,
            "max_wait_ms": lat.max_wait_ms,
            "queries_per_rate": lat.load_queries,
            "max_seconds_per_rate": lat.load_max_seconds,
            "depth": depth,
            "seed": config.seed,
            "device": latency_device(),
            "threads": torch.get_num_threads(),
        },
        "points": [p.to_dict() for p in points],
        **curve_summary(points),
        "service_model": model.to_dict(),
        "query_shapes": [[s.pairs, s.tokens] for s in shapes],
        "simulated": simulated,
        "validation": validation,
        "validation_tolerance": VALIDATION_TOLERANCE,
        "mean_tokens_per_query": float(np.mean([s.tokens for s in shapes])) if shapes else 0.0,
    }


def latency_device() -> str:
    from evalkit.env import hardware

    info = hardware()
    return info["gpu"] or info["cpu"]
