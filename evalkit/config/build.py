"""The one place where configs become objects: retrievers, rerankers, the pipeline.

Every model evalkit runs is constructed here from a validated
:class:`~evalkit.config.schema.Config`; nothing else instantiates models from settings.
Each object receives everything it needs (fingerprint, device) in its constructor.
"""

from __future__ import annotations

import logging

from evalkit.config.schema import Config, RerankerConfig, RetrieverConfig, cache_dir
from evalkit.errors import ModelError, problem

log = logging.getLogger(__name__)


def model_fingerprint(section: RetrieverConfig | RerankerConfig, path: str, extra: str) -> str:
    """Cache identity of a model and the settings that change its outputs."""
    from evalkit.models.loading import dtype_name, fingerprint, resolve_device, resolve_dtype

    dtype = dtype_name(resolve_dtype(section.dtype, resolve_device(section.device)))
    backend = section.backend if isinstance(section, RerankerConfig) else "torch"
    if backend != "torch":  # the CPU runtimes run the fp32 export, or its int8 quantisation
        dtype, backend = "fp32", f"{backend}-{section.quantize}"
    return "|".join(
        [fingerprint(path, section.revision), dtype, backend, str(section.max_length), extra]
    )


def _model_error(section: str, model: str, error: Exception) -> ModelError:
    from evalkit.models.hub import offline_fix

    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ModelError(
        problem(
            f"cannot load {section}.model '{model}': {first}", f"{section}.model", offline_fix()
        )
    )


def build_bi_encoder(rc: RetrieverConfig | RerankerConfig, section: str, config: Config):
    """A sentence-transformers bi-encoder (hub id, local folder, packaged, or random)."""
    from evalkit.models.encoders import BiEncoder
    from evalkit.models.loading import (
        load_quietly,
        resolve_device,
        resolve_dtype,
        resolve_model_path,
    )

    device = resolve_device(rc.device)
    path = resolve_model_path(rc.model, rc.weights, "bi_encoder", cache_dir(config), section)
    from sentence_transformers import SentenceTransformer

    try:
        model = load_quietly(
            lambda: SentenceTransformer(
                path,
                device=device,
                revision=rc.revision,
                trust_remote_code=rc.trust_remote_code,
                model_kwargs={"torch_dtype": resolve_dtype(rc.dtype, device)},
            ),
            config.seed,
        )
    except (OSError, ValueError) as error:
        raise _model_error(section, rc.model, error) from None
    if rc.max_length:
        model.max_seq_length = rc.max_length
    return BiEncoder(model, batch_size=rc.batch_size, show_progress=config.show_progress), path


def build_retriever(config: Config):
    """Build the first stage named by ``config.retriever``."""
    rc = config.retriever
    if rc.kind in ("run_file", "top_ranked"):
        from evalkit.retrieve.run_file import RunFileRetriever

        if rc.kind == "run_file":
            return RunFileRetriever(rc.path)
        from evalkit.data.sources import candidates_path

        return RunFileRetriever(candidates_path(config.dataset, cache_dir(config)))
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

    encoder, path = build_bi_encoder(rc, "retriever", config)
    model_key = model_fingerprint(rc, path, f"dense|{rc.query_prefix}|{rc.passage_prefix}")
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
            model_key,
            rc.shard_size,
            job,
        )

    def index_builder(matrix, kind: str):
        from evalkit.retrieve.faiss_index import build_index, cached_index

        params = {"nlist": rc.ivf_nlist, "hnsw_m": rc.hnsw_m, "seed": config.seed}
        if not config.cache.enabled:
            return build_index(matrix, kind, **params)
        key = f"{model_key}|{corpus_key.get('texts')}|{matrix.shape}"
        return cached_index(folder, key, matrix, kind, **params)

    return DenseRetriever(
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
        fingerprint=model_key,
        device=str(encoder.model.device),
    )


def build_scorer(config: Config):
    """Build the second stage named by ``config.reranker``: a
    :class:`~evalkit.rerank.base.Reranker`, or None for ``reranker=none``."""
    rr = config.reranker
    if rr.kind == "none":
        return None
    if rr.kind == "python":
        return _build_python_reranker(rr.target)
    if rr.kind == "http":
        from evalkit.rerank.http import HttpReranker

        return HttpReranker(
            rr.url,
            rr.model,
            dialect=rr.dialect,
            api_key_env=rr.api_key_env,
            max_documents=rr.max_documents,
            concurrency=rr.concurrency,
            timeout_s=rr.timeout_s,
            max_retries=rr.max_retries,
            backoff_s=rr.backoff_s,
            seed=config.seed,
        )
    if rr.kind == "colbert":
        from evalkit.rerank.colbert import build_colbert

        return build_colbert(config)
    if rr.kind == "biencoder":
        from evalkit.rerank.biencoder import BiEncoderReranker

        encoder, path = build_bi_encoder(rr, "reranker", config)
        fingerprint = model_fingerprint(
            rr, path, f"biencoder|{rr.query_prefix}|{rr.passage_prefix}"
        )
        if rr.backend != "torch":
            encoder = _onnx_bi_encoder(encoder, rr, path, fingerprint, config)
        return BiEncoderReranker(encoder, rr.query_prefix, rr.passage_prefix, fingerprint)
    return _build_cross_encoder(config)


def _build_python_reranker(target: str):
    """``package.module:factory`` -> the object it returns, checked against the protocol."""
    import importlib

    from evalkit.errors import ConfigError
    from evalkit.rerank.base import Reranker

    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            problem(
                f"cannot import reranker.target '{target}': {error}",
                "reranker.target",
                "make the module importable (installed, or on PYTHONPATH) and check the name",
            )
        ) from None
    reranker = factory()
    missing = [
        name
        for name in ("fingerprint", "max_length", "device", "token_lengths", "score")
        if not hasattr(reranker, name)
    ]
    if missing or not isinstance(reranker, Reranker) or not str(reranker.fingerprint):
        raise ConfigError(
            problem(
                f"reranker.target '{target}' returned a {type(reranker).__name__} without "
                f"{missing or ['a non-empty fingerprint']}",
                "reranker.target",
                "see evalkit.rerank.base.Reranker for what a second stage provides",
            )
        )
    return reranker


def _build_cross_encoder(config: Config):
    from evalkit.models.loading import (
        load_quietly,
        resolve_device,
        resolve_dtype,
        resolve_model_path,
    )
    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    rr = config.reranker
    device = resolve_device(rr.device)
    path = resolve_model_path(
        rr.model, rr.weights, "cross_encoder", cache_dir(config), "reranker", config.seed
    )
    from sentence_transformers import CrossEncoder

    dtype = rr.dtype
    if rr.backend != "torch":
        from evalkit.models.onnx import require

        require(rr.backend)
        device, dtype = "cpu", "fp32"  # ONNX Runtime / OpenVINO: the fp32 model on the CPU
    model_kwargs: dict = {"torch_dtype": resolve_dtype(dtype, device)}
    try:
        model = load_quietly(
            lambda: CrossEncoder(
                path,
                device=device,
                max_length=rr.max_length,
                revision=rr.revision,
                trust_remote_code=rr.trust_remote_code,
                model_kwargs=model_kwargs,
            ),
            config.seed,
        )
    except (OSError, ValueError) as error:
        raise _model_error("reranker", rr.model, error) from None
    architectures = list(getattr(model.config, "architectures", None) or [])
    head_missing = bool(architectures) and not any(
        "SequenceClassification" in a for a in architectures
    )
    if head_missing:
        log.warning(
            "reranker '%s' is a %s checkpoint, not a cross-encoder (sequence classifier): its "
            "relevance head is untrained (seeded with seed=%d) and scores are meaningless",
            rr.model,
            architectures[0],
            config.seed,
        )
    head_seed = f"head-seed{config.seed}" if head_missing else ""
    fingerprint = model_fingerprint(rr, path, f"cross|{head_seed}")
    if rr.backend != "torch":
        from evalkit.models.loading import fingerprint as weights_fingerprint
        from evalkit.models.onnx import OnnxCrossEncoderReranker, Runtime, cached_export

        # the export depends on the weights only: ONNX Runtime and OpenVINO share it
        key = f"{weights_fingerprint(path, rr.revision)}|cross|{head_seed}"
        onnx_file = cached_export(
            model.model, model.tokenizer, "logits", key, rr.quantize, cache_dir(config)
        )
        return OnnxCrossEncoderReranker(
            Runtime(onnx_file, rr.backend),
            model.tokenizer,
            max_length=model.max_length,
            batch_size=rr.batch_size,
            fingerprint=fingerprint,
        )
    return CrossEncoderReranker(
        model,
        batch_size=rr.batch_size,
        show_progress=config.show_progress,
        fingerprint=fingerprint,
    )


def _onnx_bi_encoder(encoder, rr: RerankerConfig, path: str, fingerprint: str, config: Config):
    """The bi-encoder's transformer from an ONNX export (pooling and normalisation kept)."""
    from evalkit.models.onnx import (
        OnnxBiEncoder,
        Runtime,
        cached_export,
        require,
        sentence_transformer_parts,
    )

    require(rr.backend)
    from evalkit.models.loading import fingerprint as weights_fingerprint

    network, pooling, normalize = sentence_transformer_parts(encoder.model)
    tokenizer = encoder.model.tokenizer
    onnx_file = cached_export(
        network.float().cpu(),
        tokenizer,
        "last_hidden_state",
        f"{weights_fingerprint(path, rr.revision)}|bi",
        rr.quantize,
        cache_dir(config),
    )
    return OnnxBiEncoder(
        Runtime(onnx_file, rr.backend),
        tokenizer,
        max_length=encoder.max_length,
        pooling=pooling,
        normalize=normalize,
        batch_size=rr.batch_size,
        fingerprint=fingerprint,
    )
