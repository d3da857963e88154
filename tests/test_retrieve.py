"""First stages on real data: BM25 reference numbers, dense MiniLM, exact search, self-exclusion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit.measures import evaluate, parse_measures
from evalkit.retrieve.base import exclude_self_matches
from evalkit.retrieve.bm25 import BM25Retriever
from evalkit.retrieve.dense import exact_top_k

REFERENCE = {"nDCG@10": 0.369, "P@10": 0.234, "R@100": 0.734}  # DESIGN.md, Cranfield BM25


@pytest.fixture(scope="module")
def bm25_run(cranfield):
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(cranfield.corpus)
    return bm25.search(cranfield.queries, k=1000)


def test_bm25_matches_the_cranfield_reference(cranfield, bm25_run):
    scores = evaluate(bm25_run, cranfield.qrels, parse_measures(list(REFERENCE))).aggregate
    for name, expected in REFERENCE.items():
        assert abs(scores[name] - expected) < 0.03, (name, scores[name])
    assert scores["nDCG@10"] == pytest.approx(0.3694, abs=5e-4)


def test_bm25_returns_only_documents_sharing_a_term():
    corpus = pd.DataFrame(
        {
            "doc_id": ["a", "b", "empty"],
            "title": ["", "", ""],
            "text": ["wind tunnel", "heat transfer", ""],
        }
    )
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(corpus)
    run = bm25.search(pd.DataFrame({"query_id": ["1", "2"], "text": ["tunnel", "zebra"]}), k=10)
    # "zebra" is in no document: nothing comes back (bm25s alone would match the empty doc)
    assert run[["query_id", "doc_id"]].values.tolist() == [["1", "a"]]


def test_bm25_without_stemming_misses_inflected_forms():
    corpus = pd.DataFrame({"doc_id": ["a"], "title": [""], "text": ["tunnels"]})
    queries = pd.DataFrame({"query_id": ["1"], "text": ["tunnel"]})
    for stemmer, hits in (("english", 1), (None, 0)):
        bm25 = BM25Retriever(stemmer=stemmer, show_progress=False)
        bm25.index(corpus)
        assert len(bm25.search(queries, k=5)) == hits


def test_exact_top_k_equals_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    queries, docs = rng.normal(size=(7, 16)), rng.normal(size=(1000, 16))
    scores, indices = exact_top_k(
        queries.astype(np.float32), docs.astype(np.float32), k=25, chunk_size=64, query_block=3
    )
    brute = queries @ docs.T
    expected = np.argsort(-brute, axis=1)[:, :25]
    assert (indices == expected).all()
    assert np.allclose(scores, np.take_along_axis(brute, expected, axis=1), atol=1e-4)


def test_exclude_self_fetches_one_more_and_drops_the_query_itself():
    run = pd.DataFrame({"query_id": ["x"] * 3, "doc_id": ["x", "y", "z"], "score": [3.0, 2.0, 1.0]})
    kept = exclude_self_matches(run, k=2)
    assert kept.doc_id.tolist() == ["y", "z"]
    assert run.doc_id.tolist() == ["x", "y", "z"]  # input untouched


@pytest.mark.slow
def test_dense_minilm_beats_random_by_a_wide_margin(cranfield, minilm_path, session_cache):
    from evalkit.config import build_retriever, validate
    from tests.conftest import compose, cranfield_overrides

    config = validate(
        compose(
            cranfield_overrides(session_cache, "retriever=minilm", f"retriever.model={minilm_path}")
        )
    )
    dense = build_retriever(config)
    dense.index(cranfield.corpus)
    run = dense.search(cranfield.queries, k=100)
    ndcg = evaluate(run, cranfield.qrels, parse_measures(["nDCG@10"])).aggregate["nDCG@10"]
    rng = np.random.default_rng(0)
    docs = cranfield.corpus.doc_id.to_numpy()
    random_run = pd.DataFrame(
        [
            (q, d, float(s))
            for q in cranfield.queries.query_id
            for d, s in zip(rng.choice(docs, 100, replace=False), range(100, 0, -1), strict=True)
        ],
        columns=["query_id", "doc_id", "score"],
    )
    random_ndcg = evaluate(random_run, cranfield.qrels, parse_measures(["nDCG@10"])).aggregate[
        "nDCG@10"
    ]
    assert ndcg > 0.30, ndcg  # measured 0.3819
    assert ndcg > 10 * random_ndcg, (ndcg, random_ndcg)


def test_cached_memory_mapped_bm25_index_gives_the_same_run(cranfield, bm25_run, tmp_path):
    first = BM25Retriever(show_progress=False, index_dir=tmp_path)
    first.index(cranfield.corpus)  # builds and saves
    second = BM25Retriever(show_progress=False, index_dir=tmp_path)
    second.index(cranfield.corpus)  # loads the saved index, memory-mapped
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1
    for retriever in (first, second):
        run = retriever.search(cranfield.queries, k=1000)
        pd.testing.assert_frame_equal(run.reset_index(drop=True), bm25_run.reset_index(drop=True))


def test_bm25s_own_bars_stay_off_even_with_progress_on(cranfield, capsys, caplog):
    """Indexing and searching print no bm25s bar; indexing says so in one log line."""
    import logging

    caplog.set_level(logging.INFO, logger="evalkit")
    bm25 = BM25Retriever(show_progress=True)
    bm25.index(cranfield.corpus)
    run = bm25.search(cranfield.queries, k=10)
    shown = capsys.readouterr()
    assert len(run) == 10 * 225
    assert "BM25S" not in shown.err + shown.out and "Split strings" not in shown.err
    assert "BM25: indexing 1,400 documents" in caplog.text
