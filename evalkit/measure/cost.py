"""What a paid second stage costs: dollars per 1,000 queries from the run's own pairs.

A rerank API bills by *search* (one request of at most ``max_documents`` documents, as
Cohere does) or by *token* (Jina, Voyage). evalkit counts what the run sends: each
evaluated query's top-``depth`` candidates (only the queries a selective policy reranks),
grouped into requests the way :class:`~evalkit.rerank.http.HttpReranker` groups them.
Tokens are estimated as whitespace words of query + document per pair (the service's
tokenizer is not known here); the result says so.
"""

from __future__ import annotations

import math

from evalkit.config.schema import RerankerConfig


def price(rr: RerankerConfig, pairs_per_query: list[int], words_per_query: list[int]) -> dict:
    """``{"usd_per_1k_queries", "basis", ...}`` or ``{}`` when no price is set.

    Args:
        rr: the reranker settings (``price_per_1k_searches``, ``price_per_1m_tokens``,
            ``max_documents``).
        pairs_per_query: pairs sent for each evaluated query (0 for a query not reranked).
        words_per_query: words (query + document, summed over its pairs) per query.

    Example:
        >>> rr = RerankerConfig(price_per_1k_searches=2.0, max_documents=100)
        >>> price(rr, [100, 150, 0], [0, 0, 0])["usd_per_1k_queries"]  # (1 + 2 + 0) / 3
        2.0
    """
    if rr.price_per_1k_searches is None and rr.price_per_1m_tokens is None:
        return {}
    queries = len(pairs_per_query)
    if not queries:
        return {}
    searches = sum(math.ceil(n / rr.max_documents) for n in pairs_per_query)
    words = sum(words_per_query)
    dollars = 0.0
    basis = []
    if rr.price_per_1k_searches is not None:
        dollars += searches * rr.price_per_1k_searches / 1000
        basis.append(f"{searches} searches at ${rr.price_per_1k_searches:g}/1k")
    if rr.price_per_1m_tokens is not None:
        dollars += words * rr.price_per_1m_tokens / 1e6
        basis.append(f"{words} tokens (estimated as words) at ${rr.price_per_1m_tokens:g}/1M")
    return {
        "usd_per_1k_queries": dollars / queries * 1000,
        "queries": queries,
        "searches": searches,
        "tokens_estimated": words,
        "basis": "; ".join(basis),
    }
