"""One experiment, end to end: config -> objects -> runs -> measures -> result folder.

The folder is written file by file, each atomically, and ``complete.json`` (holding the
config hash and code version) last: a folder without it, or with another config's hash,
is never taken for a finished result.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from evalkit.cache import PairScoreCache, digest
from evalkit.config import Config, build_retriever, build_scorer, cache_dir, validate
from evalkit.data import load_dataset
from evalkit.env import code_version, environment
from evalkit.errors import ConfigError, problem
from evalkit.faults import checkpoint
from evalkit.io import COMPLETE, write_json, write_parquet, write_text, write_trec_run
from evalkit.measures import CONTRACT, evaluate, parse_measures
from evalkit.pipeline import TwoStage
from evalkit.retrieve.base import doc_texts_by_id
from evalkit.timing import (
    cuda_synchronizer,
    latency_conditions,
    measure_online,
    pipeline_stages,
    sample_throughput,
)
from evalkit.types import QUERY_ID

log = logging.getLogger(__name__)

NON_SEMANTIC = ("show_progress", "verbose")


def config_hash(config: Config) -> str:
    """Hash of everything that can change a result (not progress bars or cache location)."""
    data = asdict(config)
    for key in NON_SEMANTIC:
        data.pop(key, None)
    data["cache"].pop("dir", None)
    return digest(json.dumps(data, sort_keys=True))


def completion(folder: Path) -> dict | None:
    marker = Path(folder) / COMPLETE
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


RESULT_FILES = (
    "config.yaml",
    "metrics.json",
    "per_query.parquet",
    "run.first_stage.trec",
    "run.reranked.trec",
    "latency.json",
    "env.json",
    "latency_vs_depth.csv",
    "latency_vs_depth.png",
    "latency_vs_depth.svg",
)


def _remove_stale_results(folder: Path) -> None:
    """An incomplete folder (killed run) may hold files of another config: remove them."""
    for name in RESULT_FILES:
        (folder / name).unlink(missing_ok=True)


def run_experiment(cfg, output_dir: str | Path) -> dict:
    """Run one configured experiment into ``output_dir``; returns ``metrics.json``'s content.

    A folder already complete for the same config hash and code version is skipped
    (resume); one complete for a different config is refused rather than overwritten.
    """
    config = validate(cfg)
    folder = Path(output_dir)
    chash, version = config_hash(config), code_version()
    done = completion(folder)
    if done is not None:
        if done.get("config_hash") == chash and done.get("code_version") == version:
            log.info("%s is complete for this config; skipping", folder)
            return json.loads((folder / "metrics.json").read_text())
        if done.get("config_hash") != chash:
            raise ConfigError(
                problem(
                    f"{folder} holds a finished run of a different config "
                    f"(hash {done.get('config_hash')}, this one {chash})",
                    fix="choose another hydra.run.dir, or delete the folder",
                )
            )
        log.warning(
            "%s was made by code %s, now %s: recomputing", folder, done.get("code_version"), version
        )
        (folder / COMPLETE).unlink()
    measures = parse_measures(config.eval.metrics)  # fail fast on a bad measure name
    if config.retriever.shard_job is not None:
        return _encode_shards_only(config, folder)
    _remove_stale_results(folder)
    started = time.perf_counter()
    dataset = load_dataset(config.dataset, cache_dir(config))
    measures = parse_measures(config.eval.metrics, dataset.relevance_level)
    retriever = build_retriever(config)
    scorer = build_scorer(config)
    pair_cache = (
        PairScoreCache(cache_dir(config) / "pair_scores.sqlite") if config.cache.enabled else None
    )
    retriever_key = digest(
        json.dumps(asdict(config.retriever), sort_keys=True),
        getattr(getattr(retriever, "encoder", None), "fingerprint", ""),
    )
    pipeline = TwoStage(
        retriever,
        scorer,
        depth=config.pipeline.depth,
        first_stage_k=config.pipeline.first_stage_k,
        pair_cache=pair_cache,
        run_cache_dir=cache_dir(config) / "runs" if config.cache.enabled else None,
        retriever_key=retriever_key,
        show_progress=config.show_progress,
    )
    runs = pipeline.run(dataset)
    checkpoint("after_runs")

    depth_measure = parse_measures([f"R@{config.pipeline.depth}"], dataset.relevance_level)[0]
    first = evaluate(runs.first_stage, dataset.qrels, [*measures, depth_measure])
    frames = [first.per_query.assign(stage="first_stage")]
    metrics: dict = {
        "first_stage": {m: first.aggregate[m] for m in map(str, measures)},
        "dataset": dataset.name,
        "num_queries": first.num_queries,
        "recall_at_depth": {
            "measure": str(depth_measure),
            "value": first.aggregate[str(depth_measure)],
        },
    }
    if runs.reranked is not None:
        second = evaluate(runs.reranked, dataset.qrels, measures)
        metrics["reranked"] = second.aggregate
        frames.append(second.per_query.assign(stage="reranked"))
        metrics["reranker_health"] = {
            k: runs.rerank_stats[k]
            for k in (
                "degenerate",
                "constant_score_fraction",
                "queries_with_constant_scores",
                "tie_rate",
            )
        }
    cost_only = config.reranker.weights == "random" or config.retriever.weights == "random"
    metrics["quality_meaningful"] = not cost_only
    if cost_only:
        metrics["quality_note"] = (
            "random (cost-only) weights: quality numbers are a plumbing "
            "check, not a measurement of the model"
        )
    metrics["data_warnings"] = dataset.warnings
    metrics["contract"] = {
        **CONTRACT,
        "relevance_level": dataset.relevance_level,
        "exclude_self": dataset.exclude_self,
        "split": dataset.split,
        "first_stage_k": config.pipeline.first_stage_k,
        "depth": config.pipeline.depth,
    }
    metrics["config_hash"] = chash

    latency = measure_latency(config, pipeline, dataset, runs)
    models = {
        "retriever": config.retriever.model or "bm25",
        "reranker": getattr(scorer, "fingerprint", None),
    }

    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(config)))
    write_trec_run(
        folder / "run.first_stage.trec", runs.first_stage, f"evalkit-{config.retriever.name}"
    )
    if runs.reranked is not None:
        write_trec_run(
            folder / "run.reranked.trec",
            runs.reranked,
            f"evalkit-{config.retriever.name}-{config.reranker.name}",
        )
    per_query = pd.concat(frames, ignore_index=True)[["stage", QUERY_ID, "measure", "value"]]
    write_parquet(folder / "per_query.parquet", per_query)
    write_json(folder / "latency.json", latency)
    if latency.get("depth_curve"):
        from evalkit.plots import write_depth_curve

        write_depth_curve(latency["depth_curve"], folder)
    write_json(folder / "env.json", environment(models))
    write_json(folder / "metrics.json", metrics)
    checkpoint("before_marker")
    write_json(
        folder / COMPLETE,
        {"config_hash": chash, "code_version": version, "seconds": time.perf_counter() - started},
    )
    return metrics


def _encode_shards_only(config: Config, folder: Path) -> dict:
    """``retriever.shard_job=i/n``: encode this job's corpus shards into the cache, stop."""
    index, count = (int(x) for x in config.retriever.shard_job.split("/"))
    dataset = load_dataset(config.dataset, cache_dir(config))
    started = time.perf_counter()
    build_retriever(config).encode_corpus_shards(dataset.corpus, (index, count))
    summary = {
        "encoded": f"shards {index} mod {count} of {config.retriever.shard_size} texts",
        "seconds": time.perf_counter() - started,
        "documents": len(dataset.corpus),
    }
    write_json(Path(folder) / "encode.json", summary)
    return summary


def measure_latency(config: Config, pipeline: TwoStage, dataset, runs) -> dict:
    """Online per-query latency (sampled) and offline throughput, as ``latency.json``."""
    latency: dict = {
        "offline": {
            **runs.throughput,
            "mode": "whole query set in batches, as the quality evaluation ran it",
            "num_queries": len(dataset.queries),
        },
    }
    if not config.latency.enabled:
        latency["online"] = None
        return latency
    pipeline.ensure_indexed(dataset)  # a cached first-stage run skipped indexing
    doc_text = doc_texts_by_id(dataset.corpus)  # built once for every latency measurement
    device = getattr(getattr(pipeline.scorer, "model", None), "device", None)
    sync = cuda_synchronizer(str(device) if device is not None else None)
    if pipeline.scorer is not None and not runs.throughput.get("rerank_pairs_per_second"):
        latency["offline"].update(
            sample_throughput(
                pipeline.scorer,
                runs.first_stage,
                dataset.queries,
                doc_text,
                config.pipeline.depth,
                config.latency.throughput_pairs,
                synchronize=sync,
            )
        )
    elif pipeline.scorer is not None:
        latency["offline"]["rerank_pairs_per_second_source"] = "the run's own uncached pairs"
    ordered = dataset.queries.sort_values(QUERY_ID, kind="stable")
    sample = list(zip(ordered[QUERY_ID].astype(str), ordered["text"].astype(str), strict=True))[
        : config.latency.max_queries
    ]
    depths = config.latency.depths or [config.pipeline.depth]
    curve = []
    for depth in depths:
        k = max(depth, config.pipeline.first_stage_k)
        stages = pipeline_stages(
            pipeline.retriever, pipeline.scorer, doc_text, depth, k, dataset.exclude_self
        )
        result = measure_online(
            stages,
            sample,
            warmup=config.latency.warmup,
            concurrency=config.latency.concurrency,
            synchronize=sync,
        )
        per_query_ms = {
            stage: group["ms"].tolist()
            for stage, group in result.per_query.groupby("stage", sort=False)
        }
        curve.append({"depth": depth, "stages": result.summary(), "per_query_ms": per_query_ms})
    main = next((c for c in curve if c["depth"] == config.pipeline.depth), curve[-1])
    latency["online"] = {
        **main["stages"],
        "per_query_ms": main["per_query_ms"],
        "conditions": latency_conditions(
            pipeline.scorer,
            pipeline.retriever,
            sample,
            doc_text,
            main["depth"],
            config.pipeline.first_stage_k,
            config,
        ),
        "mode": "closed loop, one query at a time per worker, warm-up excluded",
    }
    if len(curve) > 1:
        latency["depth_curve"] = [{"depth": c["depth"], "stages": c["stages"]} for c in curve]
    return latency
