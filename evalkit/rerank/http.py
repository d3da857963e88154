"""A second stage served over HTTP: the Cohere-compatible ``/rerank`` protocol.

Cohere, Jina, Voyage, Infinity and Text Embeddings Inference all take one query and a list
of documents and answer one relevance score per document; they differ in small ways (the
path, the name of the documents field, where the results are, the name of the score).
Those differences are :data:`DIALECTS`; everything else is shared:

* pairs are grouped by query and sent ``max_documents`` documents per request, at most
  ``concurrency`` requests in flight;
* 429, 5xx, timeouts and dropped connections are retried with exponential backoff (a
  numeric ``Retry-After`` is honoured); other failures, a malformed body or a wrong
  number of scores stop the run with a message naming the endpoint and what came back;
* the API key is read from the environment variable named by ``api_key_env`` when a request
  is sent; it is never stored on the object, logged, or written to a result;
* each finished request is handed to ``on_done`` (the engine caches its scores, keyed by
  endpoint + model), so a killed run resumes without paying for the same pairs twice;
* every request's wall time is kept in :attr:`HttpReranker.request_ms`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from evalkit.errors import ConfigError, ServiceError, problem
from evalkit.rerank.base import Pair
from evalkit.rerank.http_transport import (
    _OPENER,
    SECRET_PARAMETERS,
    _read_until,
    _Retryable,
    redact,
)

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class Dialect:
    """How one provider spells the rerank request and response."""

    path: str
    documents_field: str = "documents"
    results_field: str | None = "results"  # None: the body is the list of results
    score_field: str = "relevance_score"
    top_field: str | None = "top_n"  # asks for every document back
    extra: dict = field(default_factory=dict)


DIALECTS = {
    "cohere": Dialect("/v2/rerank"),
    "jina": Dialect("/v1/rerank"),
    "voyage": Dialect("/v1/rerank", results_field="data", top_field="top_k"),
    "infinity": Dialect("/rerank"),
    # Text Embeddings Inference: raw logits, like evalkit's local cross-encoders
    "tei": Dialect(
        "/rerank",
        documents_field="texts",
        results_field=None,
        score_field="score",
        top_field=None,
        extra={"raw_scores": True, "truncate": True},
    ),
}


class HttpReranker:
    """Scores pairs by calling a rerank endpoint (see the module docstring).

    Args:
        url: the endpoint's base (``https://api.cohere.com``) or full URL (ending in the
            dialect's path or any path containing ``rerank``).
        model: the model name sent with each request (part of the cache identity).
        dialect: one of :data:`DIALECTS`.
        api_key_env: the environment variable that holds the key (None: no key sent).
        max_documents: documents per request.
        concurrency: requests in flight at once.
        timeout_s: per-request timeout.
        max_retries: retries of one request after a retryable failure.
        backoff_s: first retry delay; doubled each retry, with jitter.
    """

    max_length = None
    device = "remote"

    def __init__(
        self,
        url: str,
        model: str,
        dialect: str = "cohere",
        api_key_env: str | None = None,
        max_documents: int = 100,
        concurrency: int = 4,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        seed: int = 0,
    ) -> None:
        if dialect not in DIALECTS:
            raise ConfigError(
                problem(
                    f"reranker.dialect={dialect!r} is unknown",
                    "reranker.dialect",
                    f"use one of {sorted(DIALECTS)}",
                )
            )
        self.dialect_name = dialect
        self.dialect = DIALECTS[dialect]
        base = url.rstrip("/")
        self.url = base if "rerank" in base.rsplit("/", 1)[-1] else base + self.dialect.path
        self.model = model
        self.api_key_env = api_key_env
        self.max_documents = max_documents
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.fingerprint = f"http|{self.url}|{model}|{dialect}"
        self.request_ms: list[float] = []
        self.retries = 0
        self._jitter = random.Random(seed)

    # --- the Reranker protocol ----------------------------------------------------------

    def token_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Words per pair (query + document): the server's tokenizer is not known here."""
        return np.array([len(q.split()) + len(d.split()) for q, d in pairs], dtype=np.int64)

    def score(
        self, pairs: Sequence[Pair], on_done=None, lengths: np.ndarray | None = None, progress=None
    ) -> np.ndarray:
        """One score per pair, in input order; requests run ``concurrency`` at a time and
        each finished one is handed to ``on_done`` before the next is waited for."""
        scores = np.full(len(pairs), np.nan, dtype=np.float64)
        if not pairs:
            return scores
        requests = self.requests(pairs)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            queue = iter(requests)
            running = {}
            for query, indices in queue:
                running[pool.submit(self._call, query, [pairs[i][1] for i in indices])] = indices
                if len(running) >= self.concurrency:
                    break
            try:
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        indices = running.pop(future)
                        values = future.result()
                        scores[indices] = values
                        if on_done is not None:
                            on_done(list(indices), values)
                        if progress is not None:
                            progress(len(indices))
                        following = next(queue, None)
                        if following is not None:
                            query, more = following
                            documents = [pairs[i][1] for i in more]
                            running[pool.submit(self._call, query, documents)] = more
            except BaseException:
                for future in running:
                    future.cancel()
                raise
        return scores

    def requests(self, pairs: Sequence[Pair]) -> list[tuple[str, list[int]]]:
        """``(query, pair indices)`` per request: pairs grouped by query text (first
        appearance order), at most ``max_documents`` per request."""
        groups: dict[str, list[int]] = {}
        for index, (query, _) in enumerate(pairs):
            groups.setdefault(query, []).append(index)
        return [
            (query, indices[start : start + self.max_documents])
            for query, indices in groups.items()
            for start in range(0, len(indices), self.max_documents)
        ]

    # --- one request --------------------------------------------------------------------

    def _call(self, query: str, documents: list[str]) -> np.ndarray:
        body = {"model": self.model, "query": query, self.dialect.documents_field: documents}
        if self.dialect.top_field:
            body[self.dialect.top_field] = len(documents)
        body.update(self.dialect.extra)
        data = json.dumps(body).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            started = time.perf_counter()
            try:
                payload = self._post(data)
            except _Retryable as error:
                if attempt == self.max_retries:
                    raise ServiceError(
                        problem(
                            f"{self.url} failed {attempt + 1} time(s), last with {error}",
                            "reranker.url",
                            "check the service (status page, rate limits); raise "
                            "reranker.max_retries or reranker.timeout_s, or lower "
                            "reranker.concurrency. Scores already received are cached: "
                            "rerunning resumes from them",
                        )
                    ) from None
                delay = self.backoff_s * 2**attempt * (1 + self._jitter.random() / 4)
                if error.wait_s is not None:
                    delay = max(delay, min(error.wait_s, MAX_RETRY_AFTER_S))
                log.warning("%s: %s; retry %d in %.1f s", self.url, error, attempt + 1, delay)
                self.retries += 1
                time.sleep(delay)
                continue
            self.request_ms.append((time.perf_counter() - started) * 1000)
            return self._parse(payload, len(documents))
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, data: bytes):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    problem(
                        f"the environment variable {self.api_key_env} (reranker.api_key_env) "
                        "is not set",
                        "reranker.api_key_env",
                        f"export {self.api_key_env}=YOUR_KEY (it is never written to a file)",
                    )
                )
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        key = headers.get("Authorization", "")[len("Bearer ") :]
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                raw = _read_until(response, time.monotonic() + self.timeout_s)
        except urllib.error.HTTPError as error:
            detail = redact(error.read()[:200].decode("utf-8", "replace").strip(), key)
            if error.code in RETRY_STATUS:
                retry_after = error.headers.get("Retry-After") if error.headers else None
                wait_s = float(retry_after) if retry_after and _is_number(retry_after) else None
                raise _Retryable(f"HTTP {error.code}", wait_s) from None
            hint = (
                f"check the key in ${self.api_key_env}"
                if error.code in (401, 403)
                else "check reranker.url, reranker.model and reranker.dialect"
            )
            raise ServiceError(
                problem(f"{self.url} answered HTTP {error.code}: {detail}", "reranker.url", hint)
            ) from None
        except (TimeoutError, ConnectionError, urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError | ConnectionError | OSError):
                raise _Retryable(f"{type(reason).__name__}: {reason}") from None
            raise ServiceError(
                problem(f"cannot reach {self.url}: {reason}", "reranker.url")
            ) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ServiceError(
                problem(
                    f"{self.url} answered something that is not JSON: {raw[:80]!r}",
                    "reranker.url",
                    "is this a rerank endpoint? check reranker.url and reranker.dialect",
                )
            ) from None

    def _parse(self, payload, expected: int) -> np.ndarray:
        field_name = self.dialect.results_field
        results = payload if field_name is None else _get(payload, field_name)
        if not isinstance(results, list):
            raise self._malformed(f"no '{field_name or 'list of results'}' in the response")
        scores = np.full(expected, np.nan, dtype=np.float64)
        for item in results:
            index = _get(item, "index")
            value = _get(item, self.dialect.score_field)
            if not isinstance(index, int) or not 0 <= index < expected:
                raise self._malformed(f"result index {index!r} is not in 0..{expected - 1}")
            if not _is_number(value):
                raise self._malformed(f"score {value!r} for index {index} is not a number")
            scores[index] = float(value)
        if len(results) != expected or np.isnan(scores).any():
            raise self._malformed(
                f"{len(results)} scores for {expected} documents"
                + (" (some indices repeated)" if len(results) == expected else "")
            )
        return scores

    def _malformed(self, what: str) -> ServiceError:
        return ServiceError(
            problem(
                f"{self.url} (dialect {self.dialect_name}): {what}",
                "reranker.dialect",
                f"choose the dialect the service speaks ({sorted(DIALECTS)})",
            )
        )

    # --- what it costs ------------------------------------------------------------------

    def request_stats(self) -> dict:
        """Requests sent by this object, their wall-time percentiles and the retries."""
        if not self.request_ms:
            return {"requests": 0, "retries": self.retries}
        p50, p95, p99 = np.percentile(self.request_ms, [50, 95, 99])
        return {
            "requests": len(self.request_ms),
            "retries": self.retries,
            "request_p50_ms": float(p50),
            "request_p95_ms": float(p95),
            "request_p99_ms": float(p99),
        }


def _get(item, key):
    return item.get(key) if isinstance(item, dict) else None


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def check(config) -> None:
    """``reranker.url`` must be an http(s) address, with no credentials in it (they would be
    written to config.yaml): keys come from the environment only."""
    url = config.reranker.url
    if not (url or "").startswith(("http://", "https://")):
        raise ConfigError(
            problem(
                f"reranker=http needs reranker.url=http(s)://HOST[:PORT], found {url!r}",
                "reranker.url",
                "e.g. reranker.url=https://api.cohere.com reranker.dialect=cohere",
            )
        )
    parts = urllib.parse.urlsplit(url)
    query = {k.lower() for k in urllib.parse.parse_qs(parts.query)}
    if parts.password or parts.username or query & SECRET_PARAMETERS:
        raise ConfigError(
            problem(
                "reranker.url carries credentials (user:password@ or a key parameter), which "
                "would be written to config.yaml",
                "reranker.url",
                "drop them from the URL and name the variable holding the key: "
                "reranker.api_key_env=NAME",
            )
        )


def build(config) -> HttpReranker:
    rr = config.reranker
    return HttpReranker(
        rr.url,
        rr.model,
        dialect=rr.dialect,
        api_key_env=rr.api_key_env,
        max_documents=rr.max_documents,
        concurrency=rr.concurrency,
        timeout_s=rr.timeout_s,
        max_retries=rr.max_retries,
        backoff_s=rr.backoff_s,
        seed=config.seed,
    )
