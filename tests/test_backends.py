"""ONNX Runtime and OpenVINO backends: evalkit's own export scores like torch on identical
pairs (fp32 within 1e-4; int8 keeps the ranking), exports are cached by model and
quantisation, and a missing runtime is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from evalkit.config import build_scorer, validate
from evalkit.errors import ModelError
from tests.conftest import compose

WORDS = [
    "wing",
    "flutter",
    "supersonic",
    "boundary",
    "layer",
    "heat",
    "transfer",
    "pressure",
    "shock",
    "wave",
    "laminar",
    "turbulent",
    "jet",
    "nozzle",
    "panel",
    "buckling",
    "cylinder",
    "shell",
    "vibration",
    "airfoil",
    "lift",
    "drag",
]


def pairs(count: int = 120, seed: int = 0) -> list[tuple[str, str]]:
    """Pairs of varied lengths, some past the 64-token limit used below (truncation)."""
    rng = np.random.default_rng(seed)
    return [
        (
            " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))),
            " ".join(rng.choice(WORDS, size=int(rng.integers(3, 120)))),
        )
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def tiny_bi_encoder(tmp_path_factory) -> str:
    from evalkit.models.loading import build_random_model

    shrink = {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "intermediate_size": 128,
    }
    folder = build_random_model(
        "sentence-transformers/all-MiniLM-L6-v2",
        "bi_encoder",
        tmp_path_factory.mktemp("tiny-bi"),
        shrink=shrink,
    )
    return str(folder)


def scorer(tmp_path, kind: str, model: str, *extra: str):
    preset = "minilm_l6" if kind == "cross" else "biencoder"
    return build_scorer(
        validate(
            compose(
                [
                    f"reranker={preset}",
                    f"reranker.model={model}",
                    "reranker.max_length=64",
                    f"cache.dir={tmp_path}/cache",
                    "show_progress=false",
                    *extra,
                ]
            )
        )
    )


@pytest.mark.parametrize("kind", ["cross", "bi"])
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fp32_backends_score_like_torch(
    tmp_path, tiny_cross_encoder, tiny_bi_encoder, kind, backend
):
    model = tiny_cross_encoder if kind == "cross" else tiny_bi_encoder
    reference = scorer(tmp_path, kind, model).score(pairs())
    other = scorer(tmp_path, kind, model, f"reranker.backend={backend}")
    scores = other.score(pairs())
    assert np.abs(scores - reference).max() < 1e-4
    assert other.fingerprint != scorer(tmp_path, kind, model).fingerprint  # cache identity


@pytest.fixture(scope="module")
def spread_cross_encoder(tmp_path_factory) -> str:
    """A tiny cross-encoder whose random weights are as spread as a trained model's
    (initializer_range 0.2), so its scores differ between pairs and int8 noise can be
    told from signal (the default 0.02 gives nearly constant scores)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from tests.conftest import WORDPIECE

    folder = tmp_path_factory.mktemp("spread-ce")
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=1,
        initializer_range=0.2,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizerFast(str(WORDPIECE)).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_int8_keeps_the_ranking(tmp_path, spread_cross_encoder, backend):
    reference = scorer(tmp_path, "cross", spread_cross_encoder).score(pairs())
    quantised = scorer(
        tmp_path,
        "cross",
        spread_cross_encoder,
        f"reranker.backend={backend}",
        "reranker.quantize=int8",
    ).score(pairs())
    assert not np.array_equal(quantised, reference)  # it is a different computation
    assert spearmanr(reference, quantised).statistic >= 0.98  # measured: 0.995


def test_exports_are_cached_by_model_and_quantisation(tmp_path, tiny_cross_encoder):
    scorer(tmp_path, "cross", tiny_cross_encoder, "reranker.backend=onnx")
    folders = sorted(p for p in (tmp_path / "cache" / "onnx").iterdir() if p.is_dir())
    assert len(folders) == 1
    stamp = (folders[0] / "model.onnx").stat().st_mtime_ns
    scorer(tmp_path, "cross", tiny_cross_encoder, "reranker.backend=openvino")  # same file
    assert (folders[0] / "model.onnx").stat().st_mtime_ns == stamp
    scorer(tmp_path, "cross", tiny_cross_encoder, "reranker.backend=onnx", "reranker.quantize=int8")
    assert len([p for p in (tmp_path / "cache" / "onnx").iterdir() if p.is_dir()]) == 2


def test_a_missing_runtime_names_the_install(tmp_path, tiny_cross_encoder, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name)
    )
    with pytest.raises(
        ModelError, match=r"needs \['openvino'\].*pip install 'evalkit\[openvino\]'"
    ):
        scorer(tmp_path, "cross", tiny_cross_encoder, "reranker.backend=openvino")


def test_quantize_without_a_cpu_runtime_is_refused():
    from evalkit.errors import ConfigError

    with pytest.raises(ConfigError, match="needs backend=onnx or backend=openvino"):
        validate(compose(["reranker=minilm_l6", "reranker.quantize=int8"]))


@pytest.mark.parametrize(
    "backend",
    ["onnx", pytest.param("openvino", marks=pytest.mark.slow)],  # one full run fast
)
def test_a_full_run_with_an_exported_bi_encoder(tmp_path, tiny_bi_encoder, backend):
    """The engine, the throughput pass and the online pass on an exported bi-encoder (the
    engine asks every scorer for its time split: the ONNX bi-encoder once had none and
    every such run stopped with an internal error)."""
    from evalkit.runner import run_experiment
    from tests.conftest import cranfield_overrides

    def run(*extra):
        overrides = cranfield_overrides(
            tmp_path / "cache",
            "reranker=biencoder",
            f"reranker.model={tiny_bi_encoder}",
            "dataset.max_queries=6",
            "pipeline.depth=10",
            *extra,
        )
        return run_experiment(compose(overrides), tmp_path / (extra[-1] if extra else "torch"))

    torch_run, exported = run(), run(f"reranker.backend={backend}")
    assert exported.metrics["reranked"]["nDCG@10"] == pytest.approx(
        torch_run.metrics["reranked"]["nDCG@10"], abs=1e-6
    )
    split = exported.latency["online"]["rerank_split"]
    assert split["forward_s"] > 0 and split["tokenize_s"] >= 0


def test_an_exported_bi_encoder_without_a_known_layout_tokenizes_text(tmp_path, tiny_bi_encoder):
    bi = scorer(tmp_path, "bi", tiny_bi_encoder, "reranker.backend=onnx")
    texts = [d for _, d in pairs(40)]
    assembled = bi.encoder.encode(texts)
    bi.encoder.inputs.layout = None  # as for a tokenizer the assembly does not know
    as_text = bi.encoder.encode(texts)
    assert as_text.shape == assembled.shape == (40, 64)
    assert np.abs(as_text - assembled).max() < 1e-5
    assert bi.encoder.take_split().forward > 0
