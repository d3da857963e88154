"""The batch the model sees: built whole, equal to the tokenizer's own padded batch, and on
CUDA pinned on the worker and copied without blocking.

CI has no GPU, so the CUDA branch runs here on the CPU with the three calls that need a card
(``Tensor.pin_memory``, ``Tensor.to("cuda", ...)``, ``torch.cuda.synchronize``) replaced by
recorders that do nothing: the test sees which thread pinned, how each copy was asked for,
and that every batch was synchronised, while the model runs for real on the CPU.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit.models.batches import pack, token_budget_batches
from evalkit.models.tokens import TokenStore, pair_layout, text_layout

from .conftest import collection_pairs

LENGTHS = (None, 16, 64, 128, 512)
NAMES = ("input_ids", "token_type_ids", "attention_mask")


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_a_pair_batch_equals_the_tokenizers_own_padded_batch(kind, request, cranfield):
    tokenizer = request.getfixturevalue(kind)
    pairs = collection_pairs(cranfield)[::25]
    layout, store = pair_layout(tokenizer), TokenStore(tokenizer)
    queries, docs = store.ids([q for q, _ in pairs]), store.ids([d for _, d in pairs])
    for max_length in LENGTHS:
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
        want = tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            padding=True,
            return_token_type_ids=True,
            return_tensors="np",
            **kwargs,
        )
        got = layout.batch(queries, docs, max_length, tokenizer.pad_token_id)
        for name in NAMES:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} at {max_length}")


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_a_text_batch_equals_the_tokenizers_own_padded_batch(kind, request, cranfield):
    tokenizer = request.getfixturevalue(kind)
    texts = [*cranfield.corpus.text.astype(str).tolist()[::30], "", "x"]
    layout, store = text_layout(tokenizer), TokenStore(tokenizer)
    ids = store.ids(texts)
    for max_length in LENGTHS:
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
        want = tokenizer(texts, padding=True, return_tensors="np", **kwargs)
        got = layout.batch(ids, max_length, tokenizer.pad_token_id)
        for name in ("input_ids", "attention_mask"):
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} at {max_length}")


ids_row = st.lists(st.integers(0, 30000), max_size=12).map(lambda v: np.array(v, np.int32))


@st.composite
def parts_and_rows(draw):
    rows = draw(st.integers(0, 7))
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 1))
        if draw(st.booleans()):
            parts.append((tuple(draw(st.lists(st.integers(0, 30000), max_size=3))), kind))
        else:
            parts.append((draw(st.lists(ids_row, min_size=rows, max_size=rows)), kind))
    return parts, rows


@given(parts_and_rows(), st.integers(0, 5))
@settings(max_examples=300, deadline=None)
def test_pack_equals_concatenating_each_row_and_padding_it(drawn, pad_id):
    parts, rows = drawn
    got = pack(parts, rows, pad_id)
    expected = []
    for r in range(rows):
        row = [(list(ids) if isinstance(ids, tuple) else ids[r].tolist(), k) for ids, k in parts]
        expected.append(([i for ids, _ in row for i in ids], [k for ids, k in row for _ in ids]))
    width = max((len(ids) for ids, _ in expected), default=0)
    assert got["input_ids"].shape == got["token_type_ids"].shape == (rows, width)
    for r, (ids, types) in enumerate(expected):
        pad = width - len(ids)
        assert got["input_ids"][r].tolist() == ids + [pad_id] * pad
        assert got["token_type_ids"][r].tolist() == types + [0] * pad
        assert got["attention_mask"][r].tolist() == [1] * len(ids) + [0] * pad
    assert all(v.dtype == np.int64 for v in got.values())


@pytest.fixture
def fake_card(monkeypatch):
    """The three CUDA calls as recorders; tensors stay on the CPU."""
    import torch

    seen = {"pinned_in": [], "copies": [], "syncs": 0}
    real_to = torch.Tensor.to

    def pin_memory(self, *args, **kwargs):
        seen["pinned_in"].append(threading.current_thread().name)
        return self

    def to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if str(target).startswith("cuda"):
            seen["copies"].append((str(target), kwargs.get("non_blocking", False)))
            return self
        return real_to(self, *args, **kwargs)

    def synchronize(*args, **kwargs):
        seen["syncs"] += 1

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    return seen


def on_card(monkeypatch, model_class) -> None:
    import torch

    monkeypatch.setattr(model_class, "device", property(lambda self: torch.device("cuda:0")))


def test_the_cross_encoder_on_cuda_pins_on_the_worker_and_syncs_each_batch(
    tiny_cross_encoder, cranfield, fake_card, monkeypatch
):
    from sentence_transformers import CrossEncoder

    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    model = CrossEncoder(tiny_cross_encoder, device="cpu")
    pairs = collection_pairs(cranfield)[:300]
    on_cpu = CrossEncoderReranker(model, batch_size=8, show_progress=False).score(pairs)
    assert fake_card["pinned_in"] == [] and fake_card["syncs"] == 0  # CPU: none of it

    on_card(monkeypatch, CrossEncoder)
    scorer = CrossEncoderReranker(model, batch_size=8, show_progress=False)
    scores = scorer.score(pairs)
    np.testing.assert_allclose(scores, on_cpu, rtol=0, atol=1e-5)
    widths = np.minimum(scorer.token_lengths(pairs), 512)
    batches = token_budget_batches(widths, 8 * 512, 8 * 8, exact_width=False)  # mixed on CUDA
    assert len(batches) < len(token_budget_batches(widths, 8 * 512, 64, exact_width=True))
    inputs = len(scorer.inputs)  # one pinned tensor and one copy per model input
    assert fake_card["pinned_in"] == ["evalkit-batches"] * inputs * len(batches)
    assert fake_card["copies"] == [("cuda:0", True)] * inputs * len(batches)
    assert fake_card["syncs"] == len(batches)  # the forward's seconds end on the card's
    split = scorer.take_split()
    assert 0 < split.forward <= split.total


def test_the_bi_encoder_on_cuda_pins_on_the_worker(minilm_path, cranfield, fake_card, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from evalkit.models.encoders import BiEncoder

    model = SentenceTransformer(minilm_path, device="cpu")
    texts = cranfield.corpus.text.astype(str).tolist()[:24]
    on_cpu = BiEncoder(model, batch_size=8, show_progress=False).encode(texts)
    on_card(monkeypatch, SentenceTransformer)
    encoder = BiEncoder(model, batch_size=8, show_progress=False)
    np.testing.assert_allclose(encoder.encode(texts), on_cpu, rtol=0, atol=1e-5)
    assert fake_card["pinned_in"] and set(fake_card["pinned_in"]) == {"evalkit-batches"}
    assert fake_card["copies"] and all(c == ("cuda:0", True) for c in fake_card["copies"])


@pytest.mark.parametrize("max_length", [1, 3])
def test_a_max_length_with_no_room_for_text_is_refused(tiny_cross_encoder, max_length):
    """BERT's pair inputs add 3 special tokens: at max_length 1 or 2 the tokenizer stops
    truncating (the whole pair), at 3 it keeps only the specials; either way the model would
    score text it never saw, so the run stops with one line that names the setting."""
    from sentence_transformers import CrossEncoder

    from evalkit.errors import ModelError
    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    model = CrossEncoder(tiny_cross_encoder, device="cpu", max_length=max_length)
    with pytest.raises(ModelError) as refused:
        CrossEncoderReranker(model, show_progress=False)
    assert str(refused.value) == (
        f"max_length {max_length} leaves no room for text: the model's inputs add 3 special "
        "tokens (reranker.max_length); fix: set reranker.max_length above 3 (these models are "
        "trained at 256-512)"
    )
    model = CrossEncoder(tiny_cross_encoder, device="cpu", max_length=4)  # one token of text
    assert CrossEncoderReranker(model, show_progress=False).score([("a b", "c d")]).shape == (1,)


def test_a_bi_encoder_max_length_with_no_room_for_text_is_refused(minilm_path):
    from sentence_transformers import SentenceTransformer

    from evalkit.errors import ModelError
    from evalkit.models.encoders import BiEncoder

    model = SentenceTransformer(minilm_path, device="cpu")
    model.max_seq_length = 2  # [CLS] [SEP]
    with pytest.raises(ModelError, match=r"max_length 2 leaves no room for text.*2 special"):
        BiEncoder(model, show_progress=False).encode(["boundary layer"])
