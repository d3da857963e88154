"""User-facing errors: what went wrong, where, and how to fix it."""

from __future__ import annotations


class EvalkitError(Exception):
    """An error caused by input or configuration that the user can fix.

    The CLI prints ``str(error)`` as one message and exits non-zero (no traceback
    unless verbose). Build messages with :func:`problem` so they read the same.
    """


class DataError(EvalkitError):
    """A dataset file is malformed or inconsistent."""


class ConfigError(EvalkitError):
    """A configuration value is invalid."""


class ModelError(EvalkitError):
    """A model cannot be loaded or behaves in a way that makes results meaningless."""


class ServiceError(EvalkitError):
    """A remote service (a rerank API) failed or answered something unusable."""


class NetworkError(EvalkitError):
    """A download was needed but the host cannot be reached."""


def problem(what: str, where: str | None = None, fix: str | None = None) -> str:
    """Format one error message: ``what [at where]; fix``.

    Example:
        >>> problem("duplicate document id '7'", "corpus.jsonl:12", "remove one of the two lines")
        "duplicate document id '7' (corpus.jsonl:12); fix: remove one of the two lines"
    """
    message = what
    if where:
        message += f" ({where})"
    if fix:
        message += f"; fix: {fix}"
    return message
