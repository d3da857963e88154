"""Configuration: schemas (:mod:`.schema`), registries of kinds (:mod:`.registry`),
validation (:mod:`.validate`), composition (:mod:`.compose`) and builders (:mod:`.build`)."""

from evalkit.config.build import build_retriever, build_scorer
from evalkit.config.schema import Config, cache_dir
from evalkit.config.validate import validate

__all__ = ["Config", "build_retriever", "build_scorer", "cache_dir", "validate"]
