"""The transport of ``reranker=http``: what keeps the key where it belongs and a deadline a
deadline (redirects only to the same host, redacted error bodies, a whole-response limit)."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request

from evalkit.errors import ServiceError, problem


class _Retryable(Exception):
    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.wait_s = wait_s


SECRET_PARAMETERS = frozenset({"key", "api_key", "apikey", "token", "access_token", "secret"})


def redact(text: str, key: str = "") -> str:
    """A server's answer as evalkit may print it: the key, and anything after ``Bearer``,
    replaced by ``***``."""
    import re

    if key:
        text = text.replace(key, "***")
    return re.sub(r"(?i)(bearer\s+)[^\s\"',}]+", r"\1***", text)


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port: the key never travels to
    another host (urllib would re-send the Authorization header)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            raise ServiceError(
                problem(
                    f"{req.full_url} redirects (HTTP {code}) to another host, "
                    f"{new.scheme}://{new.netloc}: evalkit does not send the key there",
                    "reranker.url",
                    "point reranker.url at the address the service answers on",
                )
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHostRedirects)


def _read_until(response, deadline: float) -> bytes:
    """The whole body, or a retryable timeout once ``deadline`` passes: ``timeout_s`` is a
    deadline for the request, not a per-read limit a trickling server can stretch."""
    chunks = []
    while True:
        if time.monotonic() > deadline:
            raise _Retryable("TimeoutError: the response took longer than reranker.timeout_s")
        chunk = response.read(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
