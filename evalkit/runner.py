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
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from evalkit.cache import PairScoreCache, digest
from evalkit.config import Config, build_retriever, build_scorer, cache_dir, validate
from evalkit.config.registry import RERANKERS, RETRIEVERS
from evalkit.data import content_digest, load_dataset
from evalkit.env import code_version, environment
from evalkit.errors import ConfigError, problem
from evalkit.faults import checkpoint
from evalkit.inputs import input_digests
from evalkit.io import write_json
from evalkit.measure.latency import measure_latency
from evalkit.measure.load_test import measure_load
from evalkit.measure.shapes import measure_cost
from evalkit.measures import (
    CONTRACT,
    check_computable,
    evaluate,
    parse_measures,
    unique_measures,
)
from evalkit.pipeline import StageRuns, TwoStage
from evalkit.progress import phase
from evalkit.rerank.policy import Policy
from evalkit.results import Identity, RunResult, completion, remove_results
from evalkit.types import QUERY_ID, Dataset

log = logging.getLogger(__name__)

NON_SEMANTIC = ("show_progress", "verbose")
# settings added after result folders were first written, with the default that behaves as
# before: left out of the hash at that default, so an existing folder of the same config
# still resumes (a set value changes the hash)
ADDED_LATER = {
    ("latency", "target_p95_ms"): [],
    ("latency", "threads"): None,
    ("retriever", "allow_remote_code"): False,
}


def config_hash(config: Config) -> str:
    """Hash of everything in the config that can change a result."""
    data = asdict(config)
    for key in NON_SEMANTIC:
        data.pop(key, None)
    data["cache"].pop("dir", None)
    for (section, key), default in ADDED_LATER.items():
        if data[section].get(key) == default:
            data[section].pop(key, None)
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

    def settings(section, registry, fingerprint: str) -> dict:
        excluded = registry.get(section.kind).identity_excluded()
        values = {k: v for k, v in asdict(section).items() if k not in excluded}
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
        retriever=settings(config.retriever, RETRIEVERS, pipeline.retriever.fingerprint),
        first_stage_k=config.pipeline.first_stage_k,
        contract=digest(json.dumps(CONTRACT, sort_keys=True)),
        reranker=(
            {
                **settings(config.reranker, RERANKERS, pipeline.scorer.fingerprint),
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
        with phase("load data", config.dataset.name):
            dataset = load_dataset(config.dataset, cache_dir(config))
            data_key = content_digest(dataset)
            inputs = input_digests(config)
        if done is not None:
            stale = _stale(done, data_key, version, inputs)
            if not stale:
                log.info("%s is complete for this config, data and inputs; skipping", folder)
                return RunResult.load(folder)
            log.warning("%s was made from other %s: recomputing", folder, stale)
        remove_results(folder)
        checkpoint("after_cleanup")
        result = _run(config, dataset, data_key)
        result.save(
            folder,
            {
                "config_hash": chash,
                "data_digest": data_key,
                "code_version": version,
                "inputs": inputs,
                "seconds": time.perf_counter() - started,
            },
        )
        return result


def _stale(done: dict, data_key: str, version: str, inputs: dict) -> str | None:
    """What differs between a finished folder's resume key and this run's, or None."""
    if done.get("data_digest") != data_key:
        return "data"
    if done.get("code_version") != version:
        return "code"
    changed = sorted(
        k
        for k in {*inputs, *(done.get("inputs") or {})}
        if inputs.get(k) != (done.get("inputs") or {}).get(k)
    )
    return f"inputs ({', '.join(changed)} changed)" if changed else None


def _run(config: Config, dataset: Dataset, data_key: str) -> RunResult:
    asked = unique_measures(parse_measures(config.eval.metrics, dataset.relevance_level))
    [at_depth] = parse_measures([f"R@{config.pipeline.depth}"], dataset.relevance_level)
    check_computable([*asked, at_depth], dataset.qrels)  # before any model runs
    with phase("load models", f"{config.retriever.kind} -> {config.reranker.kind}"):
        pipeline = build_pipeline(config)
    cost_only = config.reranker.weights == "random" or config.retriever.weights == "random"
    with phase("quality pass", f"{len(dataset.queries):,} queries, depth {pipeline.depth}"):
        runs = pipeline.run(
            dataset, rerank_queries=not (cost_only and not config.eval.cost_only_quality)
        )
    checkpoint("after_runs")
    with phase("evaluate"):
        metrics, per_query = _evaluate(config, dataset, runs, asked, at_depth, cost_only)
    with phase("latency", "throughput and the online pass"):
        latency = measure_latency(config, pipeline, dataset, runs)
    if hasattr(pipeline.scorer, "request_stats"):  # a remote second stage: its requests
        latency["requests"] = {
            **pipeline.scorer.request_stats(),
            "scope": "every request this run sent (evaluation, throughput, online pass)",
        }
    cost = measure_cost(config, pipeline, dataset, runs.first_stage)
    if cost:
        metrics["cost"] = cost
    with phase("load test") if config.latency.load_qps else nullcontext():
        load = measure_load(config, pipeline, dataset, runs)
    identity = identity_of(config, dataset, data_key, pipeline)
    from omegaconf import OmegaConf

    from evalkit.rerank.policy import query_features
    from evalkit.retrieve.base import document_texts

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
            if config.cache.enabled and RETRIEVERS.get(config.retriever.kind).cached_runs
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
    if runs.rerank_stats.get("candidates_without_text"):  # kept below the head, not scored
        metrics["data_warnings"]["rerank_candidates_without_text"] = runs.rerank_stats[
            "candidates_without_text"
        ]
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
