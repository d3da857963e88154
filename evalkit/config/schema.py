"""Config schemas (dataclasses registered with Hydra) and :func:`validate`.

Hydra composes YAML from ``conf/``; :func:`validate` merges the result into these schemas,
so a misspelled key or a wrong type is an error that names the key, then checks every
value's range. Objects are built from a validated :class:`Config` in
:mod:`evalkit.config.build`, nowhere else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore

import evalkit.config.names  # noqa: F401 - registers the folder-name resolvers
from evalkit.measures import DEFAULT_MEASURES

log = logging.getLogger(__name__)

# Models allowed to run code from their repository; anything else needs an explicit
# reranker.allow_remote_code=true on top of trust_remote_code=true.
REMOTE_CODE_MODELS = frozenset({"jinaai/jina-reranker-v2-base-multilingual"})


def bounded(default, low, high=None):
    """A numeric setting with its allowed range (checked by :func:`validate`); None stays
    allowed where the type says ``| None``."""
    return field(default=default, metadata={"low": low, "high": high})


def one_of(default, choices: tuple[str, ...]):
    """A setting with a fixed set of values (checked by :func:`validate`)."""
    return field(default=default, metadata={"choices": choices})


def safe_name(default: str):
    """A setting that names folders: letters, digits, ``.``, ``_`` and ``-`` only."""
    return field(default=default, metadata={"safe_name": True})


@dataclass
class DatasetConfig:
    name: str = safe_name("scifact")
    source: str = "beir"  # builtin | local | hub | beir | ir_datasets
    path: str | None = None
    hub_id: str | None = None  # hub: a Hub dataset repository (or a local copy of one)
    revision: str | None = None  # hub: the pinned commit
    qrels_hub_id: str | None = None  # hub: BEIR's separate qrels repository
    url: str | None = None  # beir (and hub's fallback): the zip, md5-checked
    md5: str | None = None
    irds_id: str | None = None
    split: str = "test"
    relevance_level: int = bounded(1, 1)
    exclude_self: bool = False
    on_invalid: str = one_of("warn", ("warn", "error"))  # warn | error
    max_queries: int | None = bounded(None, 1)


@dataclass
class RetrieverConfig:
    kind: str = "bm25"  # bm25 | dense | run_file | top_ranked (the dataset's candidates)
    path: str | None = None  # run_file: the TREC run file
    p95_ms: float | None = bounded(None, 0.0)  # run_file: the engine's p95 latency, when known
    name: str = safe_name("bm25")
    model: str | None = None
    revision: str | None = None
    weights: str = one_of("pretrained", ("pretrained", "random"))  # pretrained | random (cost-only)
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int | None = bounded(None, 1)
    batch_size: int = bounded(64, 1)
    device: str = "auto"
    dtype: str = one_of("auto", ("auto", "fp32", "fp16", "bf16"))
    trust_remote_code: bool = False
    allow_remote_code: bool = False  # confirms trust_remote_code for a model evalkit does not know
    chunk_size: int = bounded(50_000, 1)  # corpus rows per block in exact search
    index: str = one_of(
        "auto", ("auto", "exact", "flat", "ivf", "hnsw")
    )  # auto | exact | flat | ivf | hnsw (FAISS)
    exact_max_docs: int = bounded(
        2_000_000, 1
    )  # auto: exact search up to this size, FAISS IVF beyond
    ivf_nlist: int = bounded(0, 0)  # 0: 4 * sqrt(num_docs)
    ivf_nprobe: int = bounded(32, 1)
    hnsw_m: int = bounded(32, 2)
    hnsw_ef_search: int = bounded(128, 1)
    shard_size: int = bounded(100_000, 1)  # corpus embeddings are encoded and cached in shards
    shard_job: str | None = None  # "i/n": encode only this job's shards, then stop
    k1: float = bounded(1.2, 0.0)
    b: float = bounded(0.75, 0.0, 1.0)
    method: str = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"


@dataclass
class RerankerConfig:
    kind: str = "none"  # none | cross_encoder | biencoder | python | http | colbert
    target: str | None = None  # python: "package.module:factory" returning a Reranker
    # http: a Cohere-compatible /rerank endpoint (evalkit.rerank.http)
    url: str | None = None
    dialect: str = one_of(
        "cohere", ("cohere", "jina", "voyage", "infinity", "tei")
    )  # cohere | jina | voyage | infinity | tei
    api_key_env: str | None = None  # the environment variable holding the key (never stored)
    max_documents: int = bounded(100, 1)  # documents per request
    concurrency: int = bounded(4, 1, 256)  # requests in flight
    timeout_s: float = bounded(30.0, 0.001)
    max_retries: int = bounded(5, 0, 100)
    backoff_s: float = bounded(1.0, 0.0)
    price_per_1k_searches: float | None = bounded(
        None, 0.0
    )  # a search: one request (<= max_documents)
    price_per_1m_tokens: float | None = bounded(
        None, 0.0
    )  # tokens estimated as words (query + document)
    name: str = safe_name("none")
    model: str | None = None
    revision: str | None = None
    weights: str = one_of("pretrained", ("pretrained", "random"))  # pretrained | random (cost-only)
    max_length: int | None = bounded(512, 1)
    batch_size: int = bounded(32, 1)
    device: str = "auto"
    dtype: str = one_of(
        "auto", ("auto", "fp32", "fp16", "bf16")
    )  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    backend: str = one_of(
        "torch", ("torch", "onnx", "openvino")
    )  # torch | onnx (ONNX Runtime) | openvino: CPU runtimes
    quantize: str = one_of(
        "none", ("none", "int8")
    )  # none | int8 (onnx / openvino: dynamic int8 quantisation)
    trust_remote_code: bool = False
    allow_remote_code: bool = False
    query_prefix: str = ""
    passage_prefix: str = ""


DEFAULT_FIRST_STAGE_K = 1000


@dataclass
class PipelineConfig:
    depth: int = bounded(100, 1)
    # None: 1000 for evalkit's own retrievers, the whole run for a run file
    first_stage_k: int | None = bounded(None, 1)
    policy: str = "none"  # selective reranking, e.g. margin_below_1.7 (evalkit.analysis.selective)


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_MEASURES))
    # random (cost-only) weights: skip the reranked quality pass, whose numbers mean nothing
    cost_only_quality: bool = False


@dataclass
class LatencyConfig:
    enabled: bool = True
    max_queries: int = bounded(100, 1)  # online sample cap (a seeded sample of the queries)
    # torch threads while timing; None: the CPUs other processes leave free (no oversubscribing)
    threads: int | None = bounded(None, 1, 1024)
    # p95 budgets to decide: timing stops once the p95's 95% CI is clear of each of them
    target_p95_ms: list[float] = field(default_factory=list)
    warmup: int = bounded(3, 0)
    concurrency: int = bounded(1, 1, 1024)
    max_seconds: float = bounded(
        60.0, 0.001
    )  # time budget of the online loop per depth (>= 1 query)
    depths: list[int] = field(default_factory=list)  # latency-vs-depth curve, e.g. [10,100]
    throughput_pairs: int = bounded(256, 1)  # pairs of the run's own, timed uncached, for pairs/s
    # open-loop load test (evalkit.measure.load): offered rates, queries per rate, batching policy
    load_qps: list[float] = field(default_factory=list)  # e.g. [1,2,4,8]; [] = no load test
    load_queries: int = bounded(200, 20)
    max_batch_pairs: int = bounded(256, 1)
    max_wait_ms: float = bounded(5.0, 0.0)
    load_max_seconds: float = bounded(120.0, 0.001)  # per offered rate: no batch starts after this


@dataclass
class CacheConfig:
    dir: str = "~/.cache/evalkit"
    enabled: bool = True


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    reranker: RerankerConfig = field(default_factory=RerankerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    seed: int = bounded(0, 0, 2**32 - 1)
    show_progress: bool = True
    verbose: bool = False


# conf/config.yaml lists `evalkit_schema` first in its defaults: Hydra then composes every
# YAML onto these dataclasses, so `reranker.max_lenght=1` fails at composition.
ConfigStore.instance().store(name="evalkit_schema", node=Config)


def cache_dir(config: Config) -> Path:
    """The cache root (created, with the marker that lets ``evalkit-cache`` clear it)."""
    from evalkit.cache_root import ensure_cache_root

    return ensure_cache_root(config.cache.dir)
