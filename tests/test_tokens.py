"""Tokenize once, assemble pairs: identical ids to the tokenizer's own pair encoding.

The proofs compare :class:`~evalkit.models.tokens.PairLayout` against
``tokenizer(query, doc, truncation=True, max_length=L)`` on the shipped collection's pairs
and on random unicode text, for a WordPiece tokenizer (the real all-MiniLM-L6-v2's) and a
SentencePiece one (XLM-R's layout, a Unigram model trained here on Cranfield).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalkit.models.batches import TimeSplit, run_batches, run_with_budget, token_budget_batches
from evalkit.models.tokens import TokenStore, pair_layout, tokenizer_fingerprint

from .conftest import collection_pairs

LENGTHS = (None, 16, 64, 128, 256, 512)


READ: dict[int, tuple] = {}  # layout and store, once per tokenizer (its fingerprint costs)


def assert_identical(tokenizer, pairs, lengths=LENGTHS) -> int:
    if id(tokenizer) not in READ:
        READ[id(tokenizer)] = (pair_layout(tokenizer), TokenStore(tokenizer))
    layout, store = READ[id(tokenizer)]
    assert layout is not None
    q_ids = store.ids([q for q, _ in pairs])
    d_ids = store.ids([d for _, d in pairs])
    checked = 0
    for max_length in lengths:
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
        want = tokenizer(
            [q for q, _ in pairs], [d for _, d in pairs], return_token_type_ids=True, **kwargs
        )
        for i in range(len(pairs)):
            ids, types = layout.assemble(q_ids[i], d_ids[i], max_length)
            assert ids.tolist() == want["input_ids"][i], (pairs[i], max_length)
            assert types.tolist() == want["token_type_ids"][i], (pairs[i], max_length)
            checked += 1
    return checked


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_assembled_pairs_equal_the_tokenizers_own_on_the_shipped_collection(
    kind, request, cranfield
):
    tokenizer = request.getfixturevalue(kind)
    pairs = collection_pairs(cranfield)
    assert len(pairs) > 2500
    assert assert_identical(tokenizer, pairs) == len(pairs) * len(LENGTHS)


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_assembled_pairs_equal_on_a_sample_of_the_collection(kind, request, cranfield):
    """The fast tier's share of the proof above: every 12th pair (judged and drawn)."""
    tokenizer = request.getfixturevalue(kind)
    pairs = collection_pairs(cranfield)[::12]
    assert assert_identical(tokenizer, pairs) == len(pairs) * len(LENGTHS) > 1200


def test_the_layouts_read_off_the_tokenizers(wordpiece, sentencepiece):
    bert = pair_layout(wordpiece)
    assert (bert.prefix, bert.middle, bert.suffix) == ((101,), (102,), (102,))  # [CLS] [SEP] [SEP]
    assert bert.types == (0, 0, 0, 1, 1)
    xlmr = pair_layout(sentencepiece)
    s, e = sentencepiece.bos_token_id, sentencepiece.eos_token_id
    assert (xlmr.prefix, xlmr.middle, xlmr.suffix) == ((s,), (e, e), (e,))  # <s> </s></s> </s>
    assert xlmr.types == (0, 0, 0, 0, 0)


def test_longest_first_truncation_by_hand(wordpiece):
    layout = pair_layout(wordpiece)  # 3 special tokens
    assert layout.kept(5, 100, 20) == (5, 12)  # the short side keeps all, the long the rest
    assert layout.kept(100, 5, 20) == (12, 5)
    assert layout.kept(30, 40, 20) == (8, 9)  # both long: halves, the odd token to the longer
    assert layout.kept(40, 30, 21) == (9, 9)
    assert layout.kept(4, 4, 20) == (4, 4)


unicode_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=60
)


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=unicode_text, second=unicode_text, max_length=st.integers(min_value=4, max_value=48))
def test_assembled_pairs_equal_on_random_unicode(kind, request, first, second, max_length):
    tokenizer = request.getfixturevalue(kind)
    assert_identical(tokenizer, [(first, second)], lengths=(None, max_length))


def test_an_unknown_pair_layout_falls_back_to_text_and_says_so(minilm_path, caplog):
    """A tokenizer that puts the second text first: not assembled, tokenized as text."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    from evalkit.rerank.cross_encoder import PairScorer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $B:1 [SEP]:1 $A [SEP]",
        special_tokens=[("[CLS]", 101), ("[SEP]", 102)],
    )
    assert pair_layout(tokenizer) is None
    seen = []

    def forward(features):
        seen.append(features["input_ids"])
        return features["input_ids"][:, 1].astype(np.float32)

    with caplog.at_level(logging.WARNING):
        scorer = PairScorer(tokenizer, forward, max_length=32, batch_size=4)
    assert "tokenizing pairs as text" in caplog.text
    pairs = [("boundary layer", "flow near a wall"), ("heat", "transfer of heat by radiation")]
    scores = scorer.score(pairs)
    first_doc_token = [tokenizer(q, d)["input_ids"][1] for q, d in pairs]
    assert scores.tolist() == first_doc_token


def test_each_text_is_tokenized_once_and_kept_on_disk(wordpiece, tmp_path, cranfield):
    pairs = collection_pairs(cranfield)
    unique = {t for pair in pairs for t in pair}
    store = TokenStore(wordpiece, tmp_path)
    store.ids([q for q, _ in pairs])
    store.ids([d for _, d in pairs])
    store.ids([d for _, d in pairs])  # again: nothing new
    assert store.texts_tokenized == len(unique)
    store.save()
    again = TokenStore(wordpiece, tmp_path)  # another reranker with the same tokenizer
    ids = again.ids([d for _, d in pairs])
    assert again.texts_tokenized == 0
    assert [i.tolist() for i in ids] == [i.tolist() for i in store.ids([d for _, d in pairs])]
    assert (tmp_path / tokenizer_fingerprint(wordpiece)).is_dir()


def test_a_damaged_token_shard_is_set_aside(wordpiece, tmp_path):
    store = TokenStore(wordpiece, tmp_path)
    store.ids(["boundary layer"])
    store.save()
    shard = next((tmp_path / store.fingerprint).glob("*.npz"))
    shard.write_bytes(b"not a zip")
    again = TokenStore(wordpiece, tmp_path)
    assert again.ids(["boundary layer"])[0].tolist() == store.ids(["boundary layer"])[0].tolist()
    assert again.texts_tokenized == 1
    assert shard.with_suffix(".damaged").exists()


def test_the_fingerprint_ignores_call_settings_and_sees_the_vocabulary(
    wordpiece, sentencepiece, minilm_path
):
    from transformers import AutoTokenizer

    same = AutoTokenizer.from_pretrained(minilm_path)
    same.backend_tokenizer.enable_truncation(7)
    assert tokenizer_fingerprint(same) == tokenizer_fingerprint(wordpiece)
    assert tokenizer_fingerprint(sentencepiece) != tokenizer_fingerprint(wordpiece)


def test_token_budget_batches_cover_every_index_once_longest_first():
    lengths = np.array([5, 300, 12, 12, 80, 1, 300, 40])
    batches = token_budget_batches(lengths, max_tokens=320, max_items=4)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[b].tolist() for b in batches] == [[300], [300], [80, 40, 12, 12], [5, 1]]
    for batch in batches:
        assert len(batch) * lengths[batch].max() <= 320 or len(batch) == 1


@given(
    st.lists(st.integers(0, 600), min_size=1, max_size=300),
    st.integers(1, 20000),
    st.integers(1, 300),
)
@settings(max_examples=200, deadline=None)
def test_exact_width_batches_never_mix_widths_and_stay_in_budget(lengths, max_tokens, max_items):
    batches = token_budget_batches(np.array(lengths), max_tokens, max_items, exact_width=True)
    lengths = np.maximum(np.array(lengths), 1)  # an empty text (no special tokens) is 1 wide
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    widths = [int(lengths[b][0]) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first
    for batch in batches:
        assert len(set(lengths[batch].tolist())) == 1  # one width: no padding
        assert len(batch) <= max_items
        assert len(batch) * lengths[batch][0] <= max_tokens or len(batch) == 1
    # as few batches as those rules allow: each width's rows fill full batches
    for width in set(lengths.tolist()):
        rows = int(np.sum(lengths == width))
        per_batch = max(1, min(max_items, max_tokens // width))
        assert widths.count(width) == -(-rows // per_batch)


def test_out_of_memory_halves_the_budget_and_finishes_the_rest():
    lengths = np.array([10, 10, 10, 10, 10, 10, 10, 10])
    scores = np.zeros(len(lengths))
    calls = []

    def forward(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batch.astype(np.float32) * 2

    def done(batch, values):
        scores[batch] = values

    split = TimeSplit()
    run_with_budget(lengths, 80, 8, lambda bs: run_batches(bs, lambda b: b, forward, done, split))
    assert scores.tolist() == [2.0 * i for i in range(8)]
    assert calls == [8, 4, 2, 2, 2, 2]  # 8 fails, 4 fails, then pairs of 2 finish


def test_an_error_while_building_a_batch_reaches_the_caller():
    def build(batch):
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        run_batches([np.array([0])], build, lambda f: f, lambda b, v: None, TimeSplit())


def test_scores_equal_crossencoder_predict_and_the_time_is_split(tiny_cross_encoder, cranfield):
    """The new path's logits equal ``CrossEncoder.predict``'s raw logits (fp32, CPU), with
    every unique text tokenized once, and the seconds split into their parts."""
    import torch
    from sentence_transformers import CrossEncoder

    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    model = CrossEncoder(tiny_cross_encoder, device="cpu")
    pairs = collection_pairs(cranfield)[:600]
    scorer = CrossEncoderReranker(model, batch_size=16, show_progress=False)
    lengths = scorer.token_lengths(pairs)
    scores = scorer.score(pairs, lengths=lengths)
    want = model.predict(
        pairs, batch_size=16, activation_fn=torch.nn.Identity(), show_progress_bar=False
    )
    np.testing.assert_allclose(scores, want, rtol=0, atol=1e-5)
    assert scorer.store.texts_tokenized == len({t for pair in pairs for t in pair})
    split = scorer.take_split()
    assert split.forward > 0 and split.tokenize > 0 and split.total >= split.forward
    assert split.to_dict()["not_model_share"] == pytest.approx(1 - split.forward / split.total)
    assert scorer.take_split().total == 0  # taken: the next call starts from zero
    online = scorer.score_online(pairs[:5])
    np.testing.assert_allclose(online, want[:5], rtol=0, atol=1e-5)


@pytest.mark.parametrize("prefix", ["", "query: "])
def test_bi_encoder_embeddings_equal_sentence_transformers_encode(minilm_path, cranfield, prefix):
    """The real all-MiniLM-L6-v2 through the shared input path: the same normalised
    embeddings as ``SentenceTransformer.encode``, each unique text tokenized once."""
    from sentence_transformers import SentenceTransformer

    from evalkit.models.encoders import BiEncoder

    model = SentenceTransformer(minilm_path, device="cpu")
    texts = cranfield.corpus.text.astype(str).tolist()[:20] + cranfield.queries.text.tolist()[:12]
    texts += texts[:6]  # repeated texts are tokenized once
    encoder = BiEncoder(model, batch_size=16, show_progress=False)
    assert encoder._path is not None  # Transformer -> Pooling -> Normalize: the shared path
    got = encoder.encode(texts, prefix=prefix)
    want = model.encode(texts, prompt=prefix or None, normalize_embeddings=True, batch_size=16)
    assert got.shape == want.shape == (38, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert encoder._path.inputs.store.texts_tokenized == len(set(texts))
    split = encoder.take_split()
    assert 0 < split.forward <= split.total and split.tokenize > 0
