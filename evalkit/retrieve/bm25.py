"""BM25 with bm25s: Snowball stemming and stop words configurable, title + text indexed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.errors import ConfigError, problem
from evalkit.retrieve.base import document_texts
from evalkit.types import DOC_ID, QUERY_ID, SCORE, empty_run

log = logging.getLogger(__name__)


def _import_bm25s():
    """bm25s sets its own logger to DEBUG when imported; keep its debug lines quiet."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


class BM25Retriever:
    """Lexical first stage.

    Args:
        k1, b: BM25 parameters (defaults: Lucene's 1.2 / 0.75).
        method: bm25s variant (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``).
        stemmer: Snowball language (``english``) or None for no stemming.
        stopwords: bm25s stop-word list name (``en``) or None.
        show_progress: kept for callers; bm25s's own bars stay off (the runner prints
            phase lines, and an index build says so in one line).
        index_dir: cache folder; the index is then built once per (settings, corpus), saved,
            and loaded memory-mapped (bounded memory for large corpora, reused by jobs).

    Documents that share no term with the query are not returned (as in Lucene).

    Example:
        >>> corpus = pd.DataFrame({"doc_id": ["a", "b"], "title": ["", ""],
        ...                        "text": ["wind tunnel tests", "heat transfer"]})
        >>> queries = pd.DataFrame({"query_id": ["q"], "text": ["tunnel"]})
        >>> bm25 = BM25Retriever(show_progress=False)
        >>> bm25.index(corpus)
        >>> bm25.search(queries, k=10)["doc_id"].tolist()
        ['a']
    """

    name = "bm25"

    def __init__(
        self,
        k1: float = 1.2,
        b: float = 0.75,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        show_progress: bool = True,
        index_dir: str | Path | None = None,
    ) -> None:
        self.k1, self.b, self.method = k1, b, method
        self.index_dir = index_dir
        self.stemmer_language, self.stopwords = stemmer, stopwords
        self.show_progress = show_progress
        self._model = None
        self._tokenizer = None
        self._doc_ids: np.ndarray | None = None

    @property
    def fingerprint(self) -> str:
        """Every setting that changes BM25's scores."""
        return f"bm25|{self.k1}|{self.b}|{self.method}|{self.stemmer_language}|{self.stopwords}"

    device = None

    def _make_tokenizer(self):
        from bm25s.tokenization import Tokenizer

        stemmer = None
        if self.stemmer_language:
            import Stemmer

            try:
                stemmer = Stemmer.Stemmer(self.stemmer_language)
            except KeyError:
                raise ConfigError(
                    problem(
                        f"unknown Snowball stemmer '{self.stemmer_language}'",
                        "retriever.stemmer",
                        f"use one of {Stemmer.algorithms()[:8]}... or null",
                    )
                ) from None
        return Tokenizer(stemmer=stemmer, stopwords=self.stopwords or [])

    def index(self, corpus: pd.DataFrame) -> None:
        texts = document_texts(corpus)
        self._doc_ids = corpus[DOC_ID].astype(str).to_numpy()
        if self.index_dir is None:
            self._tokenizer, self._model = self._build(texts)
            return
        from evalkit.cache import digest, texts_digest

        key = digest(
            self.k1,
            self.b,
            self.method,
            self.stemmer_language,
            self.stopwords,
            texts_digest(texts),
            texts_digest(self._doc_ids),
        )
        self._tokenizer, self._model = self._cached(Path(self.index_dir) / key, texts)

    def _build(self, texts: list[str]):
        bm25s = _import_bm25s()

        log.info("BM25: indexing %s documents (once per settings and corpus)", f"{len(texts):,}")
        tokenizer = self._make_tokenizer()
        ids = tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(ids, show_progress=False)
        return tokenizer, model

    def _cached(self, folder: Path, texts: list[str]):
        """Build the index once (under a lock), save it, and load it memory-mapped."""
        from evalkit.artifacts import build_folder_once

        bm25s = _import_bm25s()

        def build(scratch: Path) -> None:
            tokenizer, model = self._build(texts)
            # an index built from token ids has an int->int vocabulary, which bm25s's
            # JSON writer refuses (orjson: keys must be str); store it with str keys
            model.vocab_dict = {str(k): v for k, v in model.vocab_dict.items()}
            model.save(str(scratch), show_progress=False)
            tokenizer.save_vocab(str(scratch))

        build_folder_once(folder, build, verify=True, what="BM25 index")
        tokenizer = self._make_tokenizer()
        tokenizer.load_vocab(str(folder))
        model = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        model.vocab_dict = {int(k): v for k, v in model.vocab_dict.items()}
        return tokenizer, model

    def _query_ids(self, texts: list[str]) -> list[list[int]]:
        """Map query terms to index ids; a query with no indexed term maps to no ids.

        (bm25s gives such a query its empty-string token, which matches empty documents.)
        """
        empty = self._tokenizer.get_vocab_dict().get("")
        ids = self._tokenizer.tokenize(
            texts, update_vocab=False, return_as="ids", show_progress=False
        )
        return [[i for i in query if i != empty] for query in ids]

    def search(self, queries: pd.DataFrame, k: int) -> pd.DataFrame:
        if self._model is None:
            raise RuntimeError("index() must be called before search()")
        k = min(k, len(self._doc_ids))
        query_ids = queries[QUERY_ID].astype(str).tolist()
        token_ids = self._query_ids(queries["text"].astype(str).tolist())
        searchable = [i for i, ids in enumerate(token_ids) if ids]
        if not searchable:
            return empty_run()
        indices, scores = self._model.retrieve(
            [token_ids[i] for i in searchable],
            k=k,
            n_threads=1,
            show_progress=False,
        )
        rows_q = np.repeat(np.asarray(query_ids, dtype=object)[searchable], k)
        run = pd.DataFrame(
            {
                QUERY_ID: rows_q,
                DOC_ID: self._doc_ids[indices.reshape(-1)],
                SCORE: scores.reshape(-1).astype(np.float64),
            }
        )
        return run[run[SCORE] > 0].reset_index(drop=True)
