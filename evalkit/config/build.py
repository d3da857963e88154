"""The one place where configs become objects: retrievers and rerankers, by registry.

:func:`build_retriever` and :func:`build_scorer` look the configured kind up in
:mod:`evalkit.config.registry` and call its builder with the validated
:class:`~evalkit.config.schema.Config`. The builders of the local models live here; a
kind of its own (HTTP, ColBERT, a plugin) has its builder beside its class. Each object
receives everything it needs (fingerprint, device) in its constructor.
"""

from __future__ import annotations

import logging

from evalkit.config.registry import RERANKERS, RETRIEVERS
from evalkit.config.schema import Config, RerankerConfig, RetrieverConfig, cache_dir

log = logging.getLogger(__name__)


def build_retriever(config: Config):
    """Build the first stage named by ``config.retriever.kind``."""
    return RETRIEVERS.get(config.retriever.kind).build(config)


def build_scorer(config: Config):
    """Build the second stage named by ``config.reranker.kind``: a
    :class:`~evalkit.rerank.base.Reranker`, or None for ``reranker=none``."""
    return RERANKERS.get(config.reranker.kind).build(config)


def build_bi_encoder(rc: RetrieverConfig | RerankerConfig, section: str, config: Config):
    """A sentence-transformers bi-encoder (hub id, local folder, packaged, or random)."""
    from sentence_transformers import SentenceTransformer

    from evalkit.models.encoders import BiEncoder
    from evalkit.models.loading import load_model, resolve_device, resolve_dtype
    from evalkit.models.loading import resolve_model_path as model_path

    device = resolve_device(rc.device)
    path = model_path(rc.model, rc.weights, "bi_encoder", cache_dir(config), section)
    model = load_model(
        lambda: SentenceTransformer(
            path,
            device=device,
            revision=rc.revision,
            trust_remote_code=rc.trust_remote_code,
            model_kwargs={"torch_dtype": resolve_dtype(rc.dtype, device)},
        ),
        config.seed,
        section,
        rc.model,
    )
    if rc.max_length:
        model.max_seq_length = rc.max_length
    return BiEncoder(model, batch_size=rc.batch_size, show_progress=config.show_progress), path


# --- first stages --------------------------------------------------------------------------


def build_run_file(config: Config):
    from evalkit.retrieve.run_file import RunFileRetriever

    return RunFileRetriever(config.retriever.path)


def build_top_ranked(config: Config):
    from evalkit.data.sources import candidates_path
    from evalkit.retrieve.run_file import RunFileRetriever

    return RunFileRetriever(candidates_path(config.dataset, cache_dir(config)))


def build_bm25(config: Config):
    from evalkit.retrieve.bm25 import BM25Retriever

    rc = config.retriever
    return BM25Retriever(
        k1=rc.k1,
        b=rc.b,
        method=rc.method,
        stemmer=rc.stemmer,
        stopwords=rc.stopwords,
        show_progress=config.show_progress,
        index_dir=cache_dir(config) / "bm25" if config.cache.enabled else None,
    )


def build_dense(config: Config):
    from evalkit.models.loading import model_fingerprint
    from evalkit.retrieve.dense import DenseRetriever

    rc = config.retriever
    encoder, path = build_bi_encoder(rc, "retriever", config)
    model_key = model_fingerprint(rc, path, f"dense|{rc.query_prefix}|{rc.passage_prefix}")
    corpus_embeddings, index_builder = _dense_caches(config, encoder, model_key)
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


def _dense_caches(config: Config, encoder, model_key: str):
    """The corpus-embedding and FAISS-index functions of a dense retriever, cached by the
    model's fingerprint and the corpus texts (uncached with ``cache.enabled=false``)."""
    rc = config.retriever
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

    return corpus_embeddings, index_builder


# --- second stages -------------------------------------------------------------------------


def build_biencoder_reranker(config: Config):
    from evalkit.models.loading import model_fingerprint
    from evalkit.rerank.biencoder import BiEncoderReranker

    rr = config.reranker
    encoder, path = build_bi_encoder(rr, "reranker", config)
    fingerprint = model_fingerprint(rr, path, f"biencoder|{rr.query_prefix}|{rr.passage_prefix}")
    if rr.backend != "torch":
        from evalkit.rerank.onnx import onnx_bi_encoder

        encoder = onnx_bi_encoder(encoder, rr, path, fingerprint, cache_dir(config))
    return BiEncoderReranker(encoder, rr.query_prefix, rr.passage_prefix, fingerprint)


def build_cross_encoder_reranker(config: Config):
    """A sentence-transformers CrossEncoder (raw logits), on torch or a CPU runtime."""
    from evalkit.models.loading import model_fingerprint
    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    rr = config.reranker
    model, path = _load_cross_encoder(config)
    head_seed = _head_seed(model, rr.model, config.seed)
    fingerprint = model_fingerprint(rr, path, f"cross|{head_seed}")
    if rr.backend != "torch":
        from evalkit.rerank.onnx import onnx_cross_encoder

        return onnx_cross_encoder(model, rr, path, head_seed, fingerprint, cache_dir(config))
    return CrossEncoderReranker(
        model,
        batch_size=rr.batch_size,
        show_progress=config.show_progress,
        fingerprint=fingerprint,
        token_dir=cache_dir(config) / "tokens",
    )


def _load_cross_encoder(config: Config):
    from sentence_transformers import CrossEncoder

    from evalkit.models.loading import load_model, resolve_device, resolve_dtype
    from evalkit.models.loading import resolve_model_path as model_path

    rr = config.reranker
    device, dtype = resolve_device(rr.device), rr.dtype
    path = model_path(
        rr.model, rr.weights, "cross_encoder", cache_dir(config), "reranker", config.seed
    )
    if rr.backend != "torch":
        from evalkit.rerank.onnx import require

        require(rr.backend)
        device, dtype = "cpu", "fp32"  # ONNX Runtime / OpenVINO: the fp32 model on the CPU
    model = load_model(
        lambda: CrossEncoder(
            path,
            device=device,
            max_length=rr.max_length,
            revision=rr.revision,
            trust_remote_code=rr.trust_remote_code,
            model_kwargs={"torch_dtype": resolve_dtype(dtype, device)},
        ),
        config.seed,
        "reranker",
        rr.model,
    )
    return model, path


def _head_seed(model, name: str | None, seed: int) -> str:
    """A checkpoint without a sequence-classification head gets a seeded random one: say
    so, and key its scores by the seed."""
    architectures = list(getattr(model.config, "architectures", None) or [])
    if not architectures or any("SequenceClassification" in a for a in architectures):
        return ""
    log.warning(
        "reranker '%s' is a %s checkpoint, not a cross-encoder (sequence classifier): its "
        "relevance head is untrained (seeded with seed=%d) and scores are meaningless",
        name,
        architectures[0],
        seed,
    )
    return f"head-seed{seed}"
