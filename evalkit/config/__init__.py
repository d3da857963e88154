"""Configuration: schemas and validation (:mod:`.schema`), builders (:mod:`.build`)."""

from evalkit.config.build import build_retriever, build_scorer
from evalkit.config.schema import Config, cache_dir, validate

__all__ = ["Config", "build_retriever", "build_scorer", "cache_dir", "validate"]
