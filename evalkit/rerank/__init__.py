"""Second stage: rescore the top ``depth`` candidates, keep the first-stage tail below them."""

from evalkit.rerank.engine import RerankResult, rerank

__all__ = ["RerankResult", "rerank"]
