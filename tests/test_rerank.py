"""The reranking engine: candidate preservation, raw logits, cache reuse, OOM back-off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit.cache import PairScoreCache
from evalkit.models.encoders import run_with_backoff
from evalkit.rerank.engine import merge_head_and_tail, rerank
from evalkit.retrieve.bm25 import BM25Retriever
from evalkit.types import rank_run


@pytest.fixture(scope="module")
def first_stage(cranfield):
    bm25 = BM25Retriever(show_progress=False)
    bm25.index(cranfield.corpus)
    queries = cranfield.queries[cranfield.queries.query_id.isin([str(i) for i in range(1, 31)])]
    return queries, bm25.search(queries, k=50)


@pytest.fixture(scope="module")
def scorer(tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    model = CrossEncoder(tiny_cross_encoder, max_length=128, device="cpu")
    return CrossEncoderReranker(model, batch_size=16, fingerprint="tiny", show_progress=False)


class CountingScorer:
    """Wraps a scorer and counts the pairs it is asked to score."""

    def __init__(self, inner, fingerprint="tiny"):
        self.inner, self.fingerprint, self.scored = inner, fingerprint, 0
        self.max_length = inner.max_length

    def token_lengths(self, pairs):
        return self.inner.token_lengths(pairs)

    def score(self, pairs, **kwargs):
        self.scored += len(pairs)
        return self.inner.score(pairs, **kwargs)


def test_reranked_run_reorders_only_within_depth(cranfield, first_stage, scorer):
    queries, run = first_stage
    result = rerank(run, queries, cranfield.corpus, depth=10, scorer=scorer, show_progress=False)
    before, after = rank_run(run), rank_run(result.run)
    for query_id in queries.query_id:
        b = before[before.query_id == query_id]
        a = after[after.query_id == query_id]
        assert set(a.doc_id) == set(b.doc_id)  # exactly the first-stage candidates
        assert set(a.doc_id[:10]) == set(b.doc_id[:10])  # head re-ordered within the depth
        assert a.doc_id[10:].tolist() == b.doc_id[10:].tolist()  # tail unchanged
    assert result.stats["pairs_total"] == 300
    assert not result.stats["degenerate"]


def test_scores_are_raw_fp32_logits_not_sigmoid(cranfield, first_stage, scorer, tiny_cross_encoder):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    queries, run = first_stage
    result = rerank(run, queries, cranfield.corpus, depth=3, scorer=scorer, show_progress=False)
    head = rank_run(result.run).groupby("query_id").head(3)
    top = head.iloc[0]
    query = queries.set_index("query_id").loc[top.query_id, "text"]
    doc = cranfield.corpus.set_index("doc_id").loc[top.doc_id]
    tokenizer = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cross_encoder).eval()
    features = tokenizer(
        query,
        f"{doc.title} {doc.text}".strip(),
        truncation=True,
        max_length=128,
        return_tensors="pt",
    )
    with torch.no_grad():
        logit = model(**features).logits[0, 0].item()
    assert top.score == pytest.approx(logit, abs=1e-5)


def test_merge_keeps_tail_order_with_ties_below_the_head():
    head = pd.DataFrame({"query_id": ["q"] * 2, "doc_id": ["a", "b"], "score": [-5.0, -7.0]})
    tail = pd.DataFrame(
        {"query_id": ["q"] * 3, "doc_id": ["c", "d", "e"], "score": [900.0, 900.0, 100.0]}
    )
    merged = rank_run(merge_head_and_tail(head, tail))
    # tail: c and d tie (trec_eval order: d before c), then e
    assert merged.doc_id.tolist() == ["a", "b", "d", "c", "e"]


def test_cache_serves_shallower_depths_and_identical_rankings(
    cranfield, first_stage, scorer, tmp_path
):
    queries, run = first_stage
    cache = PairScoreCache(tmp_path / "scores.sqlite")
    counting = CountingScorer(scorer)
    deep = rerank(run, queries, cranfield.corpus, 20, counting, cache=cache, show_progress=False)
    scored_deep = counting.scored
    shallow = rerank(run, queries, cranfield.corpus, 10, counting, cache=cache, show_progress=False)
    assert scored_deep == deep.stats["pairs_unique"] and counting.scored == scored_deep
    assert shallow.stats["pairs_cached"] == shallow.stats["pairs_unique"]
    fresh = rerank(run, queries, cranfield.corpus, 10, scorer, show_progress=False)
    pd.testing.assert_frame_equal(rank_run(shallow.run), rank_run(fresh.run))


def test_cache_misses_on_changed_text_model_or_max_length(cranfield, first_stage, scorer, tmp_path):
    queries, run = first_stage
    cache = PairScoreCache(tmp_path / "scores.sqlite")
    rerank(
        run, queries, cranfield.corpus, 5, CountingScorer(scorer), cache=cache, show_progress=False
    )
    edited = cranfield.corpus.copy()
    top_doc = rank_run(run).iloc[0].doc_id
    edited.loc[edited.doc_id == top_doc, "text"] += " revised"
    changed_text = CountingScorer(scorer)
    rerank(run, queries, edited, 5, changed_text, cache=cache, show_progress=False)
    assert (
        changed_text.scored == (rank_run(run).groupby("query_id").head(5).doc_id == top_doc).sum()
    )
    for fingerprint in ("tiny-other-revision", "tiny|max_length=64"):
        other = CountingScorer(scorer, fingerprint=fingerprint)
        rerank(run, queries, cranfield.corpus, 5, other, cache=cache, show_progress=False)
        assert other.scored == 150


def test_max_length_changes_the_fingerprint(tiny_cross_encoder, session_cache):
    from evalkit.config import build_scorer, validate
    from tests.conftest import compose

    prints = set()
    for length in (64, 128):
        config = validate(
            compose(
                [
                    f"reranker.model={tiny_cross_encoder}",
                    f"reranker.max_length={length}",
                    f"cache.dir={session_cache}",
                    "reranker.device=cpu",
                ]
            )
        )
        prints.add(build_scorer(config).fingerprint)
    assert len(prints) == 2


def test_out_of_memory_halves_the_batch_and_keeps_finished_work():
    calls, saved = [], []

    def compute(chunk, batch_size):
        calls.append(batch_size)
        if batch_size > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return np.asarray(chunk, dtype=np.float32) * 2

    values = run_with_backoff(
        list(range(100)), 16, compute, on_done=lambda start, v: saved.append((start, len(v)))
    )
    assert values.tolist() == [2.0 * i for i in range(100)]
    assert calls[:3] == [16, 8, 4]
    assert sum(n for _, n in saved) == 100


def test_corpus_encoding_backs_off_the_same_way():
    """The bi-encoder's embeddings go through the same back-off (rows kept whole)."""
    from evalkit.models.encoders import BiEncoder

    class Model:
        device, batch_sizes = "cpu", []

        def encode(self, texts, batch_size, **kwargs):
            self.batch_sizes.append(batch_size)
            if batch_size > 2:
                raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")
            return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)

        def get_sentence_embedding_dimension(self):
            return 3

    model = Model()
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    embeddings = BiEncoder(model, batch_size=8, show_progress=False).encode(texts)
    assert embeddings.shape == (5, 3)
    assert embeddings[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert model.batch_sizes[:3] == [8, 4, 2]


def test_other_runtime_errors_are_not_swallowed():
    def compute(chunk, batch_size):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match=r"shape mismatch"):
        run_with_backoff([1, 2, 3], 2, compute)


def test_constant_scorer_is_flagged_degenerate(cranfield, first_stage):
    class Constant:
        fingerprint, max_length = "constant", None

        def token_lengths(self, pairs):
            return np.zeros(len(pairs), dtype=np.int64)

        def score(self, pairs, **kwargs):
            return np.zeros(len(pairs), dtype=np.float32)

    queries, run = first_stage
    result = rerank(run, queries, cranfield.corpus, 10, Constant(), show_progress=False)
    assert result.stats["degenerate"] is True
    assert result.stats["constant_score_fraction"] == 1.0


def test_cache_cli_reports_and_clears(tmp_path, capsys):
    from evalkit.cache import PairScoreCache, pair_key
    from evalkit.cache_root import ensure_cache_root
    from evalkit.cli import cache_main

    ensure_cache_root(tmp_path)
    cache = PairScoreCache(tmp_path / "pair_scores.sqlite")
    cache.put_many("m", [(pair_key("q", "d"), 1.0)])
    cache.close()
    database = sum(p.stat().st_size for p in tmp_path.glob("pair_scores.sqlite*"))
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "x.npy").write_bytes(b"0" * 2048)  # made by hand, not evalkit
    cache_main(["info", "--dir", str(tmp_path)])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["pair_scores"].split()[1:] == [str(database), "bytes"]
    assert lines["not"].split()[2:] == ["2048", "bytes"]
    assert str(tmp_path) in lines["total"]
    cache_main(["clear", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"({database} bytes)" in out and "embeddings/x.npy" in out, out
    assert not list(tmp_path.glob("pair_scores.sqlite*"))
    assert (tmp_path / "embeddings" / "x.npy").stat().st_size == 2048


def test_cache_clear_refuses_a_folder_evalkit_did_not_make(tmp_path, capsys):
    from evalkit.cli import cache_main

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "my-experiment.txt").write_text("precious")
    with pytest.raises(SystemExit) as exit_info:
        cache_main(["clear", "--dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is not an evalkit cache" in capsys.readouterr().err
    assert (tmp_path / "runs" / "my-experiment.txt").read_text() == "precious"


@pytest.mark.slow  # an end-to-end run in a subprocess (the fast tier stays under 3 min)
def test_cache_clear_empties_every_kind_a_run_made_and_nothing_else(
    tmp_path, minilm_path, tiny_cross_encoder
):
    from evalkit.cache_root import CACHE_KINDS, cache_sizes
    from evalkit.cli import cache_main
    from evalkit.runner import run_experiment
    from tests.conftest import TOY, compose

    cache = tmp_path / "cache"
    common = [
        "dataset=local",
        f"dataset.path={TOY}",
        f"cache.dir={cache}",
        "show_progress=false",
        "latency.enabled=false",
        "pipeline.depth=3",
    ]
    for extra in (
        ["reranker=minilm_l6_costonly", "reranker.max_length=32"],  # bm25, random model
        [
            "retriever=minilm",
            f"retriever.model={minilm_path}",
            "reranker=minilm_l6",
            f"reranker.model={tiny_cross_encoder}",
        ],  # embeddings, runs, pair scores
        [
            "reranker=minilm_l6",
            f"reranker.model={tiny_cross_encoder}",
            "reranker.backend=onnx",
        ],  # an ONNX export
    ):
        run_experiment(compose([*common, *extra]), tmp_path / extra[-1].replace("/", "_"))
    (cache / "notes.txt").write_text("mine")
    sizes = cache_sizes(cache)
    assert all(sizes[kind] > 0 for kind in CACHE_KINDS if kind != "datasets"), str(sizes)
    assert sizes["not evalkit's"] == 4  # notes.txt: everything else was recorded as made
    cache_main(["clear", "--dir", str(cache)])
    assert cache_sizes(cache) == {**dict.fromkeys(CACHE_KINDS, 0), "not evalkit's": 4}
    assert sorted(p.name for p in cache.iterdir()) == [
        ".evalkit-cache",
        ".evalkit-entries",
        ".evalkit-entries.lock",
        "notes.txt",
    ]
    assert (cache / "notes.txt").read_text() == "mine"
