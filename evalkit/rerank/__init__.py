"""Second stage: the :class:`Reranker` protocol, its implementations, and the engine that
rescores the top ``depth`` candidates and keeps the first-stage tail below them."""

from evalkit.rerank.base import Reranker, head_pairs, split_at_depth
from evalkit.rerank.engine import RerankResult, rerank

__all__ = ["RerankResult", "Reranker", "head_pairs", "rerank", "split_at_depth"]
