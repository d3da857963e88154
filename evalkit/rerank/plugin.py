"""``reranker=python``: a second stage from the user's own code.

``reranker.target=package.module:factory`` names a function that returns an object meeting
:class:`~evalkit.rerank.base.Reranker` (``fingerprint``, ``max_length``, ``device``,
``token_lengths(pairs)``, ``score(pairs, ...)``). Its scores are cached like any other's,
whether or not it calls ``on_done``.
"""

from __future__ import annotations

import importlib
import re

from evalkit.errors import ConfigError, problem
from evalkit.rerank.base import Reranker

PROTOCOL = ("fingerprint", "max_length", "device", "token_lengths", "score")


def check(config) -> None:
    """``reranker.target`` must look like ``package.module:factory``."""
    target = config.reranker.target
    if not target or not re.fullmatch(r"[\w.]+:\w+", target):
        raise ConfigError(
            problem(
                f"reranker=python needs reranker.target=package.module:factory, found {target!r}",
                "reranker.target",
                "name a function that returns an object with fingerprint, max_length, "
                "device, token_lengths(pairs) and score(pairs, ...)",
            )
        )


def build(config) -> Reranker:
    """Import the factory, call it, and check what it returned against the protocol."""
    target = config.reranker.target
    module_name, _, attribute = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, SyntaxError) as error:
        raise ConfigError(
            problem(
                f"cannot import reranker.target '{target}': {error}",
                "reranker.target",
                "make the module importable (installed, or on PYTHONPATH) and check the name",
            )
        ) from None
    try:
        reranker = factory()
    except Exception as error:  # the user's code: its failure is theirs to fix
        raise ConfigError(
            problem(
                f"reranker.target '{target}' raised {type(error).__name__}: "
                f"{(str(error).splitlines() or [''])[0][:200]}",
                "reranker.target",
                "fix the factory (verbose=true shows its trace)",
            )
        ) from error
    missing = [name for name in PROTOCOL if not hasattr(reranker, name)]
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
