"""The retriever protocol and what every first stage shares."""

from __future__ import annotations

from typing import Protocol

import pandas as pd

from evalkit.types import DOC_ID, QUERY_ID, rank_run


class Retriever(Protocol):
    """A first stage: index a corpus once, then return the top ``k`` per query."""

    name: str

    def index(self, corpus: pd.DataFrame) -> None:
        """Index ``doc_id, title, text``."""

    def search(self, queries: pd.DataFrame, k: int) -> pd.DataFrame:
        """Return a run ``query_id, doc_id, score`` with at most ``k`` rows per query."""


def exclude_self_matches(run: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop documents whose id equals the query id, then keep the top ``k``.

    Callers fetch ``k + 1`` so that removing the self match still leaves ``k`` results;
    inputs are not modified.
    """
    kept = run[run[QUERY_ID].astype(str) != run[DOC_ID].astype(str)]
    return rank_run(kept, k=k).drop(columns="rank")


def doc_texts_by_id(corpus: pd.DataFrame) -> dict[str, str]:
    """Document id -> the text models see (title and text joined)."""
    return dict(zip(corpus[DOC_ID].astype(str), document_texts(corpus), strict=True))


def query_texts_by_id(queries: pd.DataFrame) -> dict[str, str]:
    """Query id -> query text."""
    return dict(zip(queries[QUERY_ID].astype(str), queries["text"].astype(str), strict=True))


def document_texts(corpus: pd.DataFrame) -> list[str]:
    """Title and text joined as one string per document (the BEIR convention)."""
    titles = corpus["title"].fillna("").astype(str)
    texts = corpus["text"].fillna("").astype(str)
    return [f"{t} {x}".strip() if t else x for t, x in zip(titles, texts, strict=True)]
