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
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from evalkit.errors import ConfigError, problem
from evalkit.measures import DEFAULT_MEASURES

log = logging.getLogger(__name__)

# Models allowed to run code from their repository; anything else needs an explicit
# reranker.allow_remote_code=true on top of trust_remote_code=true.
REMOTE_CODE_MODELS = frozenset({"jinaai/jina-reranker-v2-base-multilingual"})


@dataclass
class DatasetConfig:
    name: str = "scifact"
    source: str = "beir"  # builtin | local | hub | beir | ir_datasets
    path: str | None = None
    hub_id: str | None = None  # hub: a Hub dataset repository (or a local copy of one)
    revision: str | None = None  # hub: the pinned commit
    qrels_hub_id: str | None = None  # hub: BEIR's separate qrels repository
    url: str | None = None  # beir (and hub's fallback): the zip, md5-checked
    md5: str | None = None
    irds_id: str | None = None
    split: str = "test"
    relevance_level: int = 1
    exclude_self: bool = False
    on_invalid: str = "warn"  # warn | error
    max_queries: int | None = None


@dataclass
class RetrieverConfig:
    kind: str = "bm25"  # bm25 | dense | run_file | top_ranked (the dataset's candidates)
    path: str | None = None  # run_file: the TREC run file
    p95_ms: float | None = None  # run_file: the engine's p95 latency, when known
    name: str = "bm25"
    model: str | None = None
    revision: str | None = None
    weights: str = "pretrained"  # pretrained | random (cost-only)
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int | None = None
    batch_size: int = 64
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    chunk_size: int = 50_000  # corpus rows per block in exact search
    index: str = "auto"  # auto | exact | flat | ivf | hnsw (FAISS)
    exact_max_docs: int = 2_000_000  # auto: exact search up to this size, FAISS IVF beyond
    ivf_nlist: int = 0  # 0: 4 * sqrt(num_docs)
    ivf_nprobe: int = 32
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    shard_size: int = 100_000  # corpus embeddings are encoded and cached in shards
    shard_job: str | None = None  # "i/n": encode only this job's shards, then stop
    k1: float = 1.2
    b: float = 0.75
    method: str = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"


@dataclass
class RerankerConfig:
    kind: str = "none"  # none | cross_encoder | biencoder | python | http | colbert
    target: str | None = None  # python: "package.module:factory" returning a Reranker
    # http: a Cohere-compatible /rerank endpoint (evalkit.rerank.http)
    url: str | None = None
    dialect: str = "cohere"  # cohere | jina | voyage | infinity | tei
    api_key_env: str | None = None  # the environment variable holding the key (never stored)
    max_documents: int = 100  # documents per request
    concurrency: int = 4  # requests in flight
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_s: float = 1.0
    price_per_1k_searches: float | None = None  # a search: one request (<= max_documents)
    price_per_1m_tokens: float | None = None  # tokens estimated as words (query + document)
    name: str = "none"
    model: str | None = None
    revision: str | None = None
    weights: str = "pretrained"  # pretrained | random (cost-only)
    max_length: int | None = 512
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    backend: str = "torch"  # torch | onnx (ONNX Runtime) | openvino: CPU runtimes
    quantize: str = "none"  # none | int8 (onnx / openvino: dynamic int8 quantisation)
    trust_remote_code: bool = False
    allow_remote_code: bool = False
    query_prefix: str = ""
    passage_prefix: str = ""


@dataclass
class PipelineConfig:
    depth: int = 100
    first_stage_k: int = 1000
    policy: str = "none"  # selective reranking, e.g. margin_below_1.7 (evalkit.selective)


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_MEASURES))
    # random (cost-only) weights: skip the reranked quality pass, whose numbers mean nothing
    cost_only_quality: bool = False


@dataclass
class LatencyConfig:
    enabled: bool = True
    max_queries: int = 100  # online sample cap (first N evaluated queries)
    warmup: int = 3
    concurrency: int = 1
    max_seconds: float = 60.0  # time budget of the online loop per depth (>= 1 query)
    depths: list[int] = field(default_factory=list)  # latency-vs-depth curve, e.g. [10,100]
    throughput_pairs: int = 256  # pairs of the run's own, timed uncached, for pairs/s
    # open-loop load test (evalkit.load): offered rates, queries per rate, batching policy
    load_qps: list[float] = field(default_factory=list)  # e.g. [1,2,4,8]; [] = no load test
    load_queries: int = 200
    max_batch_pairs: int = 256
    max_wait_ms: float = 5.0
    load_max_seconds: float = 120.0  # per offered rate: no batch starts after this


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
    seed: int = 0
    show_progress: bool = True
    verbose: bool = False


# conf/config.yaml lists `evalkit_schema` first in its defaults: Hydra then composes every
# YAML onto these dataclasses, so `reranker.max_lenght=1` fails at composition.
ConfigStore.instance().store(name="evalkit_schema", node=Config)


def folder_slug(text: str, limit: int = 180) -> str:
    """A deterministic, filesystem-safe, readable folder name for a sweep job's overrides.

    Path values are shortened to their last component; when anything was shortened or cut,
    a hash of the full text keeps names unique.

    Example:
        >>> folder_slug("pipeline.depth=10,reranker=minilm_l6")
        'pipeline.depth=10,reranker=minilm_l6'
        >>> folder_slug("dataset.path=/data/cranfield,pipeline.depth=10")
        'dataset.path=cranfield,pipeline.depth=10-de98ec2b'
    """
    import hashlib
    import re

    items = []
    for item in text.split(",") if text else []:
        key, _, value = item.partition("=")
        if "/" in value:
            value = value.rstrip("/").rsplit("/", 1)[-1]
        items.append(f"{key}={value}" if _ else key)
    safe = re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(items)) or "default"
    if safe != text or len(safe) > limit:
        tag = hashlib.sha256(text.encode()).hexdigest()[:8]
        safe = f"{safe[: limit - 9]}-{tag}"
    return safe


def run_name(
    dataset: str, path: str | None, retriever: str, reranker: str, weights: str, depth: int
) -> str:
    """A run folder's name: the dataset (a local folder's own name), the stages, and a
    ``costonly`` mark for random weights.

    Example:
        >>> run_name("local", "/data/cranfield/", "bm25", "minilm_l6", "random", 100)
        'cranfield_bm25_minilm_l6-costonly_d100'
    """
    if path and dataset == "local":
        dataset = Path(str(path)).expanduser().name or dataset
    second = f"{reranker}-costonly" if weights == "random" and reranker != "none" else reranker
    stages = f"{retriever}_{second}_d{depth}" if reranker != "none" else f"{retriever}"
    return folder_slug(f"{dataset}_{stages}")


for _name, _function in (("evalkit_slug", folder_slug), ("evalkit_run_name", run_name)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _function)

CHOICES = {
    "retriever.index": ("auto", "exact", "flat", "ivf", "hnsw"),
    "dataset.source": ("builtin", "beir", "hub", "ir_datasets", "local"),
    "dataset.on_invalid": ("warn", "error"),
    "retriever.kind": ("bm25", "dense", "run_file", "top_ranked"),
    "retriever.weights": ("pretrained", "random"),
    "reranker.kind": ("none", "cross_encoder", "biencoder", "python", "http", "colbert"),
    "reranker.dialect": ("cohere", "jina", "voyage", "infinity", "tei"),
    "reranker.weights": ("pretrained", "random"),
    "reranker.backend": ("torch", "onnx", "openvino"),
    "reranker.quantize": ("none", "int8"),
    "reranker.dtype": ("auto", "fp32", "fp16", "bf16"),
    "retriever.dtype": ("auto", "fp32", "fp16", "bf16"),
}


def validate(cfg: DictConfig | dict) -> Config:
    """Check a composed config against the schema and the rules; return typed objects.

    Raises:
        ConfigError: naming the key, the value found and what is allowed.
    """
    raw = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    try:
        body = {
            k: v
            for k, v in OmegaConf.to_container(raw, resolve=True, throw_on_missing=True).items()
            if k != "hydra"
        }
        merged = OmegaConf.merge(OmegaConf.structured(Config), body)
    except MissingMandatoryValue as error:
        key = getattr(error, "full_key", None) or "?"
        raise ConfigError(problem(f"{key} must be set", key, f"add {key}=VALUE")) from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        raise ConfigError(
            problem(
                f"invalid config key or value '{key}': {str(error).splitlines()[0]}",
                fix="check the spelling against conf/ (evalkit-run --cfg job shows all keys)",
            )
        ) from None
    config: Config = OmegaConf.to_object(merged)
    for dotted, allowed in CHOICES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise ConfigError(problem(f"{dotted}={value!r} is not one of {list(allowed)}", dotted))
    _check_rules(config)
    return config


# (section.key, lowest allowed, highest allowed or None); None values are allowed where
# the schema says ``| None``.
BOUNDS = (
    ("pipeline.depth", 1, None),
    ("pipeline.first_stage_k", 1, None),
    ("dataset.relevance_level", 1, None),
    ("dataset.max_queries", 1, None),
    ("latency.max_queries", 1, None),
    ("latency.warmup", 0, None),
    ("latency.concurrency", 1, 1024),
    ("latency.throughput_pairs", 1, None),
    ("latency.max_seconds", 1e-3, None),
    ("latency.load_queries", 20, None),
    ("latency.max_batch_pairs", 1, None),
    ("latency.max_wait_ms", 0.0, None),
    ("latency.load_max_seconds", 1e-3, None),
    ("retriever.batch_size", 1, None),
    ("reranker.batch_size", 1, None),
    ("retriever.max_length", 1, None),
    ("reranker.max_length", 1, None),
    ("retriever.chunk_size", 1, None),
    ("retriever.shard_size", 1, None),
    ("retriever.exact_max_docs", 1, None),
    ("retriever.ivf_nlist", 0, None),
    ("retriever.ivf_nprobe", 1, None),
    ("retriever.hnsw_m", 2, None),
    ("retriever.hnsw_ef_search", 1, None),
    ("retriever.k1", 0.0, None),
    ("retriever.b", 0.0, 1.0),
    ("retriever.p95_ms", 0.0, None),
    ("reranker.max_documents", 1, None),
    ("reranker.concurrency", 1, 256),
    ("reranker.timeout_s", 1e-3, None),
    ("reranker.max_retries", 0, 100),
    ("reranker.backoff_s", 0.0, None),
    ("reranker.price_per_1k_searches", 0.0, None),
    ("reranker.price_per_1m_tokens", 0.0, None),
    ("seed", 0, 2**32 - 1),
)


def _check_bounds(config: Config) -> None:
    import math

    for dotted, low, high in BOUNDS:
        section, _, key = dotted.rpartition(".")
        value = getattr(getattr(config, section) if section else config, key)
        if value is None:
            continue
        bad = not math.isfinite(value) or value < low or (high is not None and value > high)
        if bad:
            allowed = f">= {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(
                problem(f"{dotted} must be {allowed}, found {value!r}", dotted, f"set {dotted}")
            )
    for qps in config.latency.load_qps:
        if not (math.isfinite(qps) and qps > 0):
            raise ConfigError(
                problem(
                    f"latency.load_qps values must be positive QPS, found {qps!r}",
                    "latency.load_qps",
                    "e.g. latency.load_qps=[1,2,4,8]",
                )
            )
    for depth in config.latency.depths:
        if not depth >= 1:
            raise ConfigError(
                problem(f"latency.depths must be >= 1, found {depth}", "latency.depths")
            )
    from evalkit.data.download import SAFE_NAME

    for dotted in ("dataset.name", "retriever.name", "reranker.name"):
        section, key = dotted.split(".")
        value = getattr(getattr(config, section), key)
        if not SAFE_NAME.match(value) or ".." in value:
            raise ConfigError(
                problem(
                    f"{dotted}={value!r} is not a safe name (it names folders)",
                    dotted,
                    "use letters, digits, '.', '_' and '-' only (no '/', no '..')",
                )
            )


def _check_rules(config: Config) -> None:
    pipeline, reranker = config.pipeline, config.reranker
    _check_bounds(config)
    from evalkit.selective import Policy

    Policy.parse(pipeline.policy)
    if config.dataset.source == "local" and not config.dataset.path:
        raise ConfigError(
            problem(
                "dataset=local needs a folder",
                "dataset.path",
                "add dataset.path=/path/to/beir/folder",
            )
        )
    if pipeline.first_stage_k <= 0:
        raise ConfigError(
            problem(
                f"pipeline.first_stage_k must be positive, found {pipeline.first_stage_k}",
                "pipeline.first_stage_k",
            )
        )
    if reranker.kind != "none" and not 0 < pipeline.depth <= pipeline.first_stage_k:
        raise ConfigError(
            problem(
                f"pipeline.depth={pipeline.depth} must be between 1 and "
                f"pipeline.first_stage_k={pipeline.first_stage_k}",
                "pipeline.depth",
                "rerank at most as many candidates as the first stage returns",
            )
        )
    if config.retriever.shard_job is not None:
        parts = config.retriever.shard_job.split("/")
        if (
            len(parts) != 2
            or not all(x.isdigit() for x in parts)
            or not 0 <= int(parts[0]) < int(parts[1])
        ):
            raise ConfigError(
                problem(
                    f"retriever.shard_job must be 'i/n' with 0 <= i < n, "
                    f"found '{config.retriever.shard_job}'",
                    "retriever.shard_job",
                )
            )
        if config.retriever.kind != "dense" or not config.cache.enabled:
            raise ConfigError(
                problem(
                    "retriever.shard_job needs a dense retriever and the "
                    "cache (the shards live there)",
                    "retriever.shard_job",
                )
            )
    if config.retriever.kind == "run_file" and not config.retriever.path:
        raise ConfigError(
            problem(
                "retriever=run_file needs a run file",
                "retriever.path",
                "add retriever.path=/path/to/run.trec",
            )
        )
    if config.dataset.source == "hub" and not config.dataset.hub_id:
        raise ConfigError(
            problem(
                "dataset.source=hub needs dataset.hub_id",
                "dataset.hub_id",
                "e.g. dataset.hub_id=mteb/scifact dataset.revision=COMMIT",
            )
        )
    if config.dataset.source == "ir_datasets" and not config.dataset.irds_id:
        raise ConfigError(
            problem(
                "dataset=irds needs an ir_datasets id",
                "dataset.irds_id",
                "e.g. dataset.irds_id=beir/nfcorpus/test (see ir-datasets.com)",
            )
        )
    if config.retriever.kind == "dense" and not config.retriever.model:
        raise ConfigError(problem("retriever=dense needs retriever.model", "retriever.model"))
    if reranker.kind == "python":
        import re

        if not reranker.target or not re.fullmatch(r"[\w.]+:\w+", reranker.target):
            raise ConfigError(
                problem(
                    f"reranker=python needs reranker.target=package.module:factory, found "
                    f"{reranker.target!r}",
                    "reranker.target",
                    "name a function that returns an object with fingerprint, max_length, "
                    "device, token_lengths(pairs) and score(pairs, ...)",
                )
            )
    elif reranker.kind != "none" and not reranker.model:
        raise ConfigError(
            problem(f"reranker.kind={reranker.kind} needs reranker.model", "reranker.model")
        )
    if reranker.backend != "torch" and reranker.kind not in ("cross_encoder", "biencoder"):
        raise ConfigError(
            problem(
                f"reranker.backend={reranker.backend} runs cross-encoders and bi-encoders, not "
                f"reranker.kind={reranker.kind}",
                "reranker.backend",
                "use backend=torch",
            )
        )
    if reranker.quantize != "none" and reranker.backend == "torch":
        raise ConfigError(
            problem(
                f"reranker.quantize={reranker.quantize} needs backend=onnx or backend=openvino",
                "reranker.quantize",
                "add reranker.backend=onnx",
            )
        )
    if reranker.kind == "http" and not (reranker.url or "").startswith(("http://", "https://")):
        raise ConfigError(
            problem(
                f"reranker=http needs reranker.url=http(s)://HOST[:PORT], found {reranker.url!r}",
                "reranker.url",
                "e.g. reranker.url=https://api.cohere.com reranker.dialect=cohere",
            )
        )
    if (
        reranker.trust_remote_code
        and reranker.model not in REMOTE_CODE_MODELS
        and not reranker.allow_remote_code
    ):
        raise ConfigError(
            problem(
                f"trust_remote_code=true for '{reranker.model}', which evalkit does not know "
                "to need it: that would run code downloaded with the model",
                "reranker.trust_remote_code",
                "drop it, or confirm with reranker.allow_remote_code=true if you trust the "
                "model's repository",
            )
        )
    for key, value in (
        ("latency.concurrency", config.latency.concurrency),
        ("retriever.batch_size", config.retriever.batch_size),
        ("reranker.batch_size", reranker.batch_size),
    ):
        if value <= 0:
            raise ConfigError(problem(f"{key} must be positive, found {value}", key))


def cache_dir(config: Config) -> Path:
    """The cache root (created, with the marker that lets ``evalkit-cache`` clear it)."""
    from evalkit.cache import ensure_cache_root

    return ensure_cache_root(config.cache.dir)
