"""Registries: one table per kind of thing a config names (name -> builder, rules, identity).

``reranker.kind``, ``retriever.kind`` and ``dataset.source`` are looked up here, nowhere
else: validation takes its list of choices from these tables, :mod:`evalkit.config.build`
calls the entry's builder, and the runner reads which settings leave a system's identity.
An unknown name is a :class:`~evalkit.errors.ConfigError` naming the nearest choices.

Builders and checks are ``"package.module:function"`` strings, imported only when used, so
validating a config never imports torch. Adding a reranker kind is one module (its class and
``build(config)``), one :func:`Registry.register` call below, and one YAML in
``conf/reranker/`` (docs/architecture.md walks through it).

Example:
    >>> [need.setting for need in RERANKERS.get("cross_encoder").requires]
    ['model']
    >>> RERANKERS.get("cross-encoder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    evalkit.errors.ConfigError: unknown reranker.kind 'cross-encoder' ...['cross_encoder', ...
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from evalkit.errors import ConfigError, problem

# settings that never change a system's numbers (left out of every identity); a kind adds
# its own with ``not_identity``
COMMON_NOT_IDENTITY = frozenset(
    {
        "batch_size",
        "device",
        "shard_size",
        "shard_job",
        "chunk_size",
        "trust_remote_code",
        "allow_remote_code",
        "api_key_env",
        "concurrency",
        "timeout_s",
        "max_retries",
        "backoff_s",
    }
)


def resolve(target: str) -> Callable:
    """``"package.module:function"`` -> the function (imported now)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Need:
    """A setting a kind cannot run without, and what to tell a user who left it out."""

    setting: str
    message: str = ""  # default: "<key>=<kind> needs <group>.<setting>"
    fix: str = ""


@dataclass(frozen=True)
class Kind:
    """One registered kind.

    Args:
        name: what a config names (``reranker.kind=cross_encoder``).
        builder: ``"module:function"`` taking the validated Config, returning the object
            (None for a kind that builds nothing, like ``reranker.kind=none``).
        requires: settings of the section that must be set for this kind.
        check: optional ``"module:function"`` taking the validated Config; raises
            ConfigError for a setting this kind cannot run with.
        not_identity: settings of this kind, besides the common ones, that do not change
            a system's numbers (timeouts, retries, where a key comes from).
        backends: ``reranker.backend`` values this kind can run on.
        external: a first stage evalkit did not run itself (a run file, a dataset's own
            candidate lists): its latency is unknown unless the user gives it, it is its own
            cache, and it is kept whole unless ``pipeline.first_stage_k`` is set.
    """

    name: str
    builder: str | None
    requires: tuple[Need, ...] = ()
    check: str | None = None
    not_identity: frozenset[str] = frozenset()
    backends: tuple[str, ...] = ("torch",)
    external: bool = False

    def build(self, config) -> object:
        return None if self.builder is None else resolve(self.builder)(config)

    @property
    def timed(self) -> bool:
        return not self.external

    @property
    def cached_runs(self) -> bool:
        return not self.external

    def identity_excluded(self) -> frozenset[str]:
        return COMMON_NOT_IDENTITY | self.not_identity


class Registry:
    """Kinds by name for one config key (``reranker.kind``)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._kinds: dict[str, Kind] = {}

    def register(self, kind: Kind) -> Kind:
        if kind.name in self._kinds:
            raise ValueError(f"{self.key} '{kind.name}' is registered twice")
        self._kinds[kind.name] = kind
        return kind

    def unregister(self, name: str) -> None:
        self._kinds.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def get(self, name: str) -> Kind:
        if name not in self._kinds:
            close = difflib.get_close_matches(str(name), self.names(), n=3)
            choices = close + [n for n in self.names() if n not in close]
            raise ConfigError(
                problem(f"unknown {self.key} '{name}'", self.key, f"choose one of {choices}")
            )
        return self._kinds[name]

    def check(self, config, section) -> None:
        """The kind's own rules: :meth:`require`, then the kind's check."""
        kind = self.require(section)
        if kind.check is not None:
            resolve(kind.check)(config)

    def require(self, section) -> Kind:
        """The section's kind, with its required settings set and its backend supported."""
        group, _, field_name = self.key.partition(".")
        kind = self.get(getattr(section, field_name))
        for need in kind.requires:
            if not getattr(section, need.setting):
                key = f"{group}.{need.setting}"
                raise ConfigError(
                    problem(
                        need.message or f"{self.key}={kind.name} needs {key}",
                        key,
                        need.fix or f"add {key}=VALUE",
                    )
                )
        backend = getattr(section, "backend", "torch")
        if backend not in kind.backends:
            raise ConfigError(
                problem(
                    f"{group}.backend={backend} does not run {self.key}={kind.name} "
                    f"(it runs on {list(kind.backends)})",
                    f"{group}.backend",
                    "use backend=torch",
                )
            )
        return kind


RERANKERS = Registry("reranker.kind")
RETRIEVERS = Registry("retriever.kind")
SOURCES = Registry("dataset.source")

_CPU_RUNTIMES = ("torch", "onnx", "openvino")
RERANKERS.register(Kind("none", None))
RERANKERS.register(
    Kind(
        "cross_encoder",
        "evalkit.config.build:build_cross_encoder_reranker",
        requires=(Need("model"),),
        backends=_CPU_RUNTIMES,
    )
)
RERANKERS.register(
    Kind(
        "biencoder",
        "evalkit.config.build:build_biencoder_reranker",
        requires=(Need("model"),),
        backends=_CPU_RUNTIMES,
    )
)
RERANKERS.register(
    Kind(
        "python",
        "evalkit.rerank.plugin:build",
        check="evalkit.rerank.plugin:check",
    )
)
RERANKERS.register(
    Kind(
        "http",
        "evalkit.rerank.http:build",
        requires=(Need("model"),),
        check="evalkit.rerank.http:check",
    )
)
RERANKERS.register(
    Kind("colbert", "evalkit.rerank.colbert:build_colbert", requires=(Need("model"),))
)

RETRIEVERS.register(Kind("bm25", "evalkit.config.build:build_bm25"))
RETRIEVERS.register(
    Kind(
        "dense",
        "evalkit.config.build:build_dense",
        requires=(Need("model"),),
    )
)
RETRIEVERS.register(
    Kind(
        "run_file",
        "evalkit.config.build:build_run_file",
        requires=(
            Need("path", "retriever=run_file needs a run file", "add retriever.path=RUN.trec"),
        ),
        external=True,
    )
)
RETRIEVERS.register(Kind("top_ranked", "evalkit.config.build:build_top_ranked", external=True))

# a source's builder takes (DatasetConfig, cache folder) and returns the BEIR folder
SOURCES.register(Kind("builtin", "evalkit.data.sources:builtin_folder"))
_LOCAL = Need("path", "dataset=local needs a folder", "add dataset.path=/path/to/beir/folder")
_HUB = Need(
    "hub_id",
    "dataset.source=hub needs dataset.hub_id",
    "e.g. dataset.hub_id=mteb/scifact dataset.revision=COMMIT",
)
_IRDS = Need(
    "irds_id",
    "dataset=irds needs an ir_datasets id",
    "e.g. dataset.irds_id=beir/nfcorpus/test (see ir-datasets.com)",
)
SOURCES.register(Kind("local", "evalkit.data.sources:local_folder", requires=(_LOCAL,)))
SOURCES.register(Kind("beir", "evalkit.data.sources:beir_folder", requires=(Need("url"),)))
SOURCES.register(Kind("hub", "evalkit.data.sources:hub_folder", requires=(_HUB,)))
SOURCES.register(Kind("ir_datasets", "evalkit.data.irds:fetch_irds", requires=(_IRDS,)))
