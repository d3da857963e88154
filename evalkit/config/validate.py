"""From a composed config to a checked :class:`~evalkit.config.schema.Config`.

Three layers, each next to what it checks: the field declarations in
:mod:`evalkit.config.schema` carry their ranges, choices and name rules (checked for every
field here, generically); each kind's own requirements sit in its registry entry
(:mod:`evalkit.config.registry`); and the few rules that tie settings together are one
small function per group below.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from evalkit.config.registry import RERANKERS, RETRIEVERS, SOURCES
from evalkit.config.schema import DEFAULT_FIRST_STAGE_K, REMOTE_CODE_MODELS, Config
from evalkit.errors import ConfigError, problem


def validate(cfg: DictConfig | dict) -> Config:
    """Check a composed config against the schema and the rules; return typed objects.

    Raises:
        ConfigError: naming the key, the value found and what is allowed.
    """
    config = _typed(cfg)
    for section in fields(Config):
        value = getattr(config, section.name)
        if is_dataclass(value):
            for item in fields(value):
                _check_field(f"{section.name}.{item.name}", item, getattr(value, item.name))
        else:
            _check_field(section.name, section, value)
    for rule in (
        _dataset_rules,
        _retriever_rules,
        _reranker_rules,
        _pipeline_rules,
        _latency_rules,
        _eval_rules,
    ):
        rule(config)
    return config


def _typed(cfg: DictConfig | dict) -> Config:
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
    return OmegaConf.to_object(merged)


def _check_field(dotted: str, declared, value) -> None:
    """The rules declared with the field: ``bounded``, ``one_of``, ``safe_name``."""
    rules = declared.metadata
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(
            problem(f"{dotted}={value!r} is not one of {list(rules['choices'])}", dotted)
        )
    if "low" in rules and value is not None:
        low, high = rules["low"], rules["high"]
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(
                problem(f"{dotted} must be {allowed}, found {value!r}", dotted, f"set {dotted}")
            )
    if rules.get("safe_name"):
        from evalkit.data.download import SAFE_NAME

        if not SAFE_NAME.match(value) or ".." in value:
            raise ConfigError(
                problem(
                    f"{dotted}={value!r} is not a safe name (it names folders)",
                    dotted,
                    "use letters, digits, '.', '_' and '-' only (no '/', no '..')",
                )
            )


def _dataset_rules(config: Config) -> None:
    SOURCES.check(config, config.dataset)


def _retriever_rules(config: Config) -> None:
    rc = config.retriever
    RETRIEVERS.check(config, rc)
    _remote_code_guard(rc, "retriever")
    if rc.shard_job is None:
        return
    parts = rc.shard_job.split("/")
    if len(parts) != 2 or not all(x.isdigit() for x in parts) or not int(parts[0]) < int(parts[1]):
        raise ConfigError(
            problem(
                f"retriever.shard_job must be 'i/n' with 0 <= i < n, found '{rc.shard_job}'",
                "retriever.shard_job",
            )
        )
    if rc.kind != "dense" or not config.cache.enabled:
        raise ConfigError(
            problem(
                "retriever.shard_job needs a dense retriever and the cache (the shards live there)",
                "retriever.shard_job",
            )
        )


def _reranker_rules(config: Config) -> None:
    rr = config.reranker
    RERANKERS.check(config, rr)
    if rr.quantize != "none" and rr.backend == "torch":
        raise ConfigError(
            problem(
                f"reranker.quantize={rr.quantize} needs backend=onnx or backend=openvino",
                "reranker.quantize",
                "add reranker.backend=onnx",
            )
        )
    _remote_code_guard(rr, "reranker")


def _remote_code_guard(section, name: str) -> None:
    """trust_remote_code runs Python from the model's folder or repository: only for a
    model evalkit knows to need it, or when the user confirms it (either stage)."""
    if (
        section.trust_remote_code
        and section.model not in REMOTE_CODE_MODELS
        and not section.allow_remote_code
    ):
        raise ConfigError(
            problem(
                f"trust_remote_code=true for '{section.model}', which evalkit does not know "
                "to need it: that would run code downloaded with the model",
                f"{name}.trust_remote_code",
                f"drop it, or confirm with {name}.allow_remote_code=true if you trust the "
                "model's repository",
            )
        )


def _pipeline_rules(config: Config) -> None:
    from evalkit.rerank.policy import Policy

    pipeline = config.pipeline
    Policy.parse(pipeline.policy)
    if pipeline.first_stage_k is None and not RETRIEVERS.get(config.retriever.kind).external:
        pipeline.first_stage_k = DEFAULT_FIRST_STAGE_K  # an external run stays whole (None)
    if pipeline.first_stage_k is None:
        return
    if config.reranker.kind != "none" and not pipeline.depth <= pipeline.first_stage_k:
        raise ConfigError(
            problem(
                f"pipeline.depth={pipeline.depth} must be between 1 and "
                f"pipeline.first_stage_k={pipeline.first_stage_k}",
                "pipeline.depth",
                "rerank at most as many candidates as the first stage returns",
            )
        )


def _latency_rules(config: Config) -> None:
    lat = config.latency
    _positive_values("latency.load_qps", lat.load_qps, "QPS", "e.g. latency.load_qps=[1,2,4,8]")
    _positive_values(
        "latency.target_p95_ms", lat.target_p95_ms, "ms", "e.g. latency.target_p95_ms=[100]"
    )
    for depth in config.latency.depths:
        if not depth >= 1:
            raise ConfigError(
                problem(f"latency.depths must be >= 1, found {depth}", "latency.depths")
            )


def _positive_values(key: str, values: list, unit: str, example: str) -> None:
    for value in values:
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(
                problem(f"{key} values must be positive {unit}, found {value!r}", key, example)
            )


def _eval_rules(config: Config) -> None:
    """At least one measure, each one parsed and computable here (data-dependent backend
    limits are checked again on the qrels when the run starts)."""
    from evalkit.measures import check_computable, parse_measures

    if not config.eval.metrics:
        raise ConfigError(
            problem("eval.metrics is empty", "eval.metrics", "name at least one, e.g. [nDCG@10]")
        )
    check_computable(parse_measures(config.eval.metrics, config.dataset.relevance_level))
