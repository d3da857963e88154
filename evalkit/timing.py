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

from evalkit.types import DOC_ID, QUERY_ID, RANK, rank_run

Clock = Callable[[], int]
# A stage takes the previous stage's output (the query for the first) and returns its own.
Stage = tuple[str, Callable[[object], object]]


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
        stages = {}
        for stage, frame in self.per_query.groupby("stage", sort=False):
            stats = summarize(frame["ms"].tolist())
            stats["qps"] = self.measured / self.wall_seconds if self.wall_seconds else None
            stages[stage] = stats
        return stages


def measure_online(
    stages: Sequence[Stage],
    queries: Sequence[object],
    warmup: int = 3,
    concurrency: int = 1,
    clock: Clock = time.perf_counter_ns,
    synchronize: Callable[[], None] | None = None,
) -> OnlineResult:
    """Time ``stages`` per query in a closed loop; ``total`` is their end-to-end sum.

    Args:
        stages: ``(name, fn)`` in order; ``fn`` receives the previous stage's output.
        queries: what the first stage receives, one item per query.
        warmup: queries run first (cycling through ``queries``) and not reported.
        concurrency: closed-loop workers (1 = one query at a time).
        clock: nanosecond clock (injectable for tests).
        synchronize: called before every clock read (``torch.cuda.synchronize`` on GPU).
    """
    sync = synchronize or (lambda: None)

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

    for i in range(warmup):
        one(queries[i % len(queries)])
    rows: list[tuple[int, str, float]] = []
    lock = threading.Lock()

    def record(index: int) -> None:
        timings = one(queries[index])
        with lock:
            rows.extend((index, name, ms) for name, ms in timings)

    sync()
    begin = clock()
    if concurrency == 1:
        for index in range(len(queries)):
            record(index)
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(record, range(len(queries))))
    sync()
    wall = (clock() - begin) / 1e9
    frame = pd.DataFrame(rows, columns=["query", "stage", "ms"]).sort_values(
        ["query"], kind="stable"
    )
    return OnlineResult(frame.reset_index(drop=True), wall, len(queries), warmup, concurrency)


def cuda_synchronizer(device: str | None) -> Callable[[], None] | None:
    if not device or not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.synchronize


def pipeline_stages(
    retriever, scorer, doc_text: dict[str, str], depth: int, k: int, exclude_self: bool
) -> list[Stage]:
    """The online stages of a two-stage system, for one query ``(query_id, text)``.

    Texts are looked up before timing; tokenisation is inside the rerank stage; the pair
    cache is not used (a served query is new).
    """
    fetch = k + (1 if exclude_self else 0)
    stages: list[Stage] = []
    if hasattr(retriever, "encode_queries"):
        stages.append(("query_encoding", lambda q: (q, retriever.encode_queries([q[1]]))))
        stages.append(
            (
                "first_stage",
                lambda state: retriever.search_embeddings([state[0][0]], state[1], fetch).assign(
                    text=state[0][1]
                ),
            )
        )
    else:
        stages.append(
            (
                "first_stage",
                lambda q: retriever.search(
                    pd.DataFrame({QUERY_ID: [q[0]], "text": [q[1]]}), fetch
                ).assign(text=q[1]),
            )
        )
    if scorer is not None:

        def rerank_one(run: pd.DataFrame):
            if run.empty:
                return run
            text = run["text"].iloc[0]
            head = rank_run(run)
            head = head[head[RANK] <= depth]
            return scorer.score([(text, doc_text[d]) for d in head[DOC_ID]])

        stages.append(("rerank", rerank_one))
    return stages


def latency_conditions(
    scorer,
    retriever,
    sample: Sequence[tuple[str, str]],
    doc_text: dict[str, str],
    depth: int,
    k: int,
    config,
) -> dict:
    """What the latency numbers were measured under, recorded beside them."""
    import torch

    from evalkit.env import hardware

    info = hardware()
    conditions = {
        "device": info["gpu"] or info["cpu"],
        "threads": torch.get_num_threads(),
        "concurrency": config.latency.concurrency,
        "sample_queries": len(sample),
        "warmup_queries": config.latency.warmup,
        "depth": depth,
        "first_stage_k": k,
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
    if scorer is not None and hasattr(scorer, "token_lengths"):
        run = retriever.search(
            pd.DataFrame({QUERY_ID: [q for q, _ in sample], "text": [t for _, t in sample]}), depth
        )
        query_text = dict(sample)
        pairs = [
            (query_text[q], doc_text[d]) for q, d in zip(run[QUERY_ID], run[DOC_ID], strict=True)
        ]
        lengths = scorer.token_lengths(pairs)
        if len(lengths):
            limit = scorer.max_length or int(lengths.max())
            conditions["mean_tokens_per_pair"] = float(np.minimum(lengths, limit).mean())
            conditions["truncated_pairs"] = int((lengths > limit).sum())
            conditions["pairs_measured"] = len(pairs)
    return conditions


def sample_throughput(
    scorer,
    run: pd.DataFrame,
    queries: pd.DataFrame,
    doc_text: dict[str, str],
    depth: int,
    limit: int,
    clock: Clock = time.perf_counter_ns,
    synchronize: Callable[[], None] | None = None,
) -> dict:
    """Sustained pairs/s of ``scorer`` on up to ``limit`` of the run's own head pairs.

    Used when a run scored nothing itself (every pair came from the cache), so its offline
    throughput is still measured, on the same kind of pairs, without the cache.
    """
    head = rank_run(run)
    head = head[head[RANK] <= depth].head(limit)
    query_text = dict(zip(queries[QUERY_ID].astype(str), queries["text"].astype(str), strict=True))
    pairs = [
        (query_text[q], doc_text[d]) for q, d in zip(head[QUERY_ID], head[DOC_ID], strict=True)
    ]
    if not pairs:
        return {}
    sync = synchronize or (lambda: None)
    scorer.score(pairs[: min(len(pairs), 16)])  # warm-up
    sync()
    start = clock()
    scorer.score(pairs)
    sync()
    seconds = (clock() - start) / 1e9
    return {
        "rerank_pairs_per_second": len(pairs) / seconds if seconds else None,
        "rerank_pairs_per_second_source": f"timed on a sample of {len(pairs)} of the "
        "run's pairs (the run's scores all came from "
        "the cache)",
    }
