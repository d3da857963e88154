"""Dense retrieval and bi-encoder reranking with a deterministic keyword encoder: exact
cosine scores and rankings checked by hand on the toy collection."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from evalkit.data import load_beir_folder
from evalkit.models.encoders import BiEncoder
from evalkit.rerank.biencoder import BiEncoderReranker
from evalkit.retrieve.dense import DenseRetriever
from tests.conftest import TOY
from tests.keyword_encoder import KeywordModel, encode


@pytest.fixture(scope="module")
def toy():
    return load_beir_folder(TOY)


def test_dense_retrieval_scores_are_cosines_by_hand(toy):
    retriever = DenseRetriever(encode, fingerprint="keywords")
    retriever.index(toy.corpus)
    queries = pd.DataFrame({"query_id": ["q"], "text": ["swept wing wind tunnel"]})
    run = retriever.search(queries, k=3)
    # query: wind, tunnel, wing -> (1,1,0,0,0,0,0,1)/sqrt 3. d1 "Wind tunnel wind tunnel
    # tests of a swept wing ...": wind 2, tunnel 2, wing 1 -> cos = 5/(sqrt 3 * 3)
    top = run.sort_values("score", ascending=False).iloc[0]
    assert top.doc_id == "d1"
    assert top.score == pytest.approx(5 / (math.sqrt(3) * 3), abs=1e-6)


def test_biencoder_reranker_rescores_pairs_by_hand():
    reranker = BiEncoderReranker(BiEncoder(KeywordModel(), show_progress=False))
    scores = reranker.score([("heat", "heat transfer"), ("heat", "wind tunnel"), ("x", "y")])
    assert scores.tolist() == pytest.approx([1.0, 0.0, 0.0])
