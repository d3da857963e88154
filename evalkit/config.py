"""Config schemas (dataclasses) and the one place where configs become objects.

Hydra composes YAML from ``conf/``; :func:`validate` merges the result into these schemas,
so a misspelled key or a wrong type is an error that names the key. :func:`build_retriever`
and :func:`build_scorer` are the only functions that construct models from config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    source: str = "beir"  # beir | ir_datasets | local
    path: str | None = None
    url: str | None = None
    md5: str | None = None
    irds_id: str | None = None
    split: str = "test"
    relevance_level: int = 1
    exclude_self: bool = False
    on_invalid: str = "warn"  # warn | error
    max_queries: int | None = None


@dataclass
class RetrieverConfig:
    kind: str = "bm25"  # bm25 | dense
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
    kind: str = "none"  # none | cross_encoder | biencoder
    name: str = "none"
    model: str | None = None
    revision: str | None = None
    weights: str = "pretrained"  # pretrained | random (cost-only)
    max_length: int | None = 512
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    backend: str = "torch"  # torch | onnx | openvino
    backend_file: str | None = None  # e.g. onnx/model_qint8_avx512_vnni.onnx
    trust_remote_code: bool = False
    allow_remote_code: bool = False
    query_prefix: str = ""
    passage_prefix: str = ""


@dataclass
class PipelineConfig:
    depth: int = 100
    first_stage_k: int = 1000


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_MEASURES))


@dataclass
class LatencyConfig:
    enabled: bool = True
    max_queries: int = 100  # online sample cap (first N evaluated queries)
    warmup: int = 3
    concurrency: int = 1
    depths: list[int] = field(default_factory=list)  # latency-vs-depth curve, e.g. [10,100]
    throughput_pairs: int = 256  # pairs timed for offline pairs/s when the cache scored all


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


if not OmegaConf.has_resolver("evalkit_slug"):
    OmegaConf.register_new_resolver("evalkit_slug", folder_slug)

CHOICES = {
    "retriever.index": ("auto", "exact", "flat", "ivf", "hnsw"),
    "dataset.source": ("beir", "ir_datasets", "local"),
    "dataset.on_invalid": ("warn", "error"),
    "retriever.kind": ("bm25", "dense"),
    "retriever.weights": ("pretrained", "random"),
    "reranker.kind": ("none", "cross_encoder", "biencoder"),
    "reranker.weights": ("pretrained", "random"),
    "reranker.backend": ("torch", "onnx", "openvino"),
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


def _check_rules(config: Config) -> None:
    pipeline, reranker = config.pipeline, config.reranker
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
    if config.retriever.kind == "dense" and not config.retriever.model:
        raise ConfigError(problem("retriever=dense needs retriever.model", "retriever.model"))
    if reranker.kind != "none" and not reranker.model:
        raise ConfigError(
            problem(f"reranker.kind={reranker.kind} needs reranker.model", "reranker.model")
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
    return Path(config.cache.dir).expanduser()


# --- the one place where configs become objects ----------------------------------------


def build_bi_encoder(rc: RetrieverConfig | RerankerConfig, cache: Path, show_progress: bool):
    """Load a sentence-transformers bi-encoder (pretrained, local path, or random)."""
    from evalkit.models.encoders import BiEncoder
    from evalkit.models.loading import resolve_device, resolve_dtype, resolve_model_path

    device = resolve_device(rc.device)
    path = resolve_model_path(rc.model, rc.weights, "bi_encoder", cache)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        path,
        device=device,
        revision=rc.revision,
        trust_remote_code=bool(getattr(rc, "trust_remote_code", False)),
        model_kwargs={"torch_dtype": resolve_dtype(rc.dtype, device)},
    )
    if rc.max_length:
        model.max_seq_length = rc.max_length
    return BiEncoder(model, batch_size=rc.batch_size, show_progress=show_progress), path


def build_retriever(config: Config, embeddings_hook=None) -> Any:
    """Build the first stage named by ``config.retriever``."""
    rc = config.retriever
    if rc.kind == "bm25":
        from evalkit.retrieve.bm25 import BM25Retriever

        return BM25Retriever(
            k1=rc.k1,
            b=rc.b,
            method=rc.method,
            stemmer=rc.stemmer,
            stopwords=rc.stopwords,
            show_progress=config.show_progress,
            index_dir=cache_dir(config) / "bm25" if config.cache.enabled else None,
        )
    from evalkit.retrieve.dense import DenseRetriever

    encoder, path = build_bi_encoder(rc, cache_dir(config), config.show_progress)
    encoder.fingerprint = model_fingerprint(rc, path, f"dense|{rc.passage_prefix}")
    folder = cache_dir(config) / "embeddings"
    corpus_key: dict[str, str] = {}

    def corpus_embeddings(texts: list[str], job: tuple[int, int] | None = None):
        from evalkit.cache import texts_digest
        from evalkit.retrieve.shards import encode_sharded

        corpus_key["texts"] = texts_digest(texts)

        if not config.cache.enabled:
            return encoder.encode(texts, rc.passage_prefix)
        return encode_sharded(
            texts,
            lambda part: encoder.encode(part, rc.passage_prefix),
            folder,
            encoder.fingerprint,
            rc.shard_size,
            job,
        )

    def index_builder(matrix, kind: str):
        from evalkit.retrieve.faiss_index import build_index, cached_index

        params = {"nlist": rc.ivf_nlist, "hnsw_m": rc.hnsw_m, "seed": config.seed}
        if not config.cache.enabled:
            return build_index(matrix, kind, **params)
        key = f"{encoder.fingerprint}|{corpus_key.get('texts')}|{matrix.shape}"
        return cached_index(folder, key, matrix, kind, **params)

    retriever = DenseRetriever(
        encoder.encode,
        rc.query_prefix,
        rc.passage_prefix,
        chunk_size=rc.chunk_size,
        corpus_embeddings=corpus_embeddings,
        index=rc.index,
        exact_max_docs=rc.exact_max_docs,
        index_builder=index_builder,
        nprobe=rc.ivf_nprobe,
        ef_search=rc.hnsw_ef_search,
    )
    retriever.encoder = encoder
    return retriever


def model_fingerprint(section: RetrieverConfig | RerankerConfig, path: str, extra: str) -> str:
    """Cache identity of a model and the settings that change its outputs."""
    from evalkit.models.loading import dtype_name, fingerprint, resolve_device, resolve_dtype

    dtype = dtype_name(resolve_dtype(section.dtype, resolve_device(section.device)))
    return "|".join(
        [
            fingerprint(path, section.revision),
            dtype,
            getattr(section, "backend", "torch"),
            str(section.max_length),
            extra,
        ]
    )


BACKEND_PACKAGES = {"onnx": ("optimum", "onnxruntime"), "openvino": ("optimum", "openvino")}


def _require_backend(backend: str) -> None:
    """Fail with the install command when an onnx/openvino backend's packages are missing."""
    import importlib.util

    missing = [m for m in BACKEND_PACKAGES.get(backend, ()) if importlib.util.find_spec(m) is None]
    if missing:
        from evalkit.errors import ModelError

        raise ModelError(
            problem(
                f"reranker.backend={backend} needs {missing}, which are not installed",
                "reranker.backend",
                f"pip install 'sentence-transformers[{backend}]', or use backend=torch",
            )
        )


def build_scorer(config: Config):
    """Build the second-stage scorer named by ``config.reranker`` (None for ``none``)."""
    rr = config.reranker
    if rr.kind == "none":
        return None
    cache = cache_dir(config)
    if rr.kind == "biencoder":
        from evalkit.models.encoders import BiEncoderScorer

        encoder, path = build_bi_encoder(rr, cache, config.show_progress)
        return BiEncoderScorer(
            encoder,
            rr.query_prefix,
            rr.passage_prefix,
            fingerprint=model_fingerprint(
                rr, path, f"biencoder|{rr.query_prefix}|{rr.passage_prefix}"
            ),
        )
    from evalkit.models.encoders import CrossEncoderScorer
    from evalkit.models.loading import resolve_device, resolve_dtype, resolve_model_path

    device = resolve_device(rr.device)
    path = resolve_model_path(rr.model, rr.weights, "cross_encoder", cache, config.seed)
    from sentence_transformers import CrossEncoder

    _require_backend(rr.backend)
    kwargs: dict[str, Any] = {}
    if rr.backend == "torch":
        kwargs["model_kwargs"] = {"torch_dtype": resolve_dtype(rr.dtype, device)}
    elif rr.backend_file:
        kwargs["model_kwargs"] = {"file_name": rr.backend_file}
    try:
        model = CrossEncoder(
            path,
            device=device,
            max_length=rr.max_length,
            revision=rr.revision,
            trust_remote_code=rr.trust_remote_code,
            backend=rr.backend,
            **kwargs,
        )
    except OSError as error:
        from evalkit.errors import ModelError

        raise ModelError(
            problem(
                f"cannot load reranker '{rr.model}': {str(error).splitlines()[0]}",
                "reranker.model",
                "no network? point reranker.model at a local folder, or use "
                "reranker.weights=random for cost-only timing",
            )
        ) from None
    architectures = list(getattr(model.config, "architectures", None) or [])
    if architectures and not any("SequenceClassification" in a for a in architectures):
        log.warning(
            "reranker '%s' is a %s checkpoint, not a cross-encoder (sequence classifier): its "
            "relevance head is untrained and scores will be meaningless",
            rr.model,
            architectures[0],
        )
    return CrossEncoderScorer(
        model,
        batch_size=rr.batch_size,
        show_progress=config.show_progress,
        fingerprint=model_fingerprint(rr, path, f"cross|{rr.backend_file}"),
    )
