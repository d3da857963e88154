"""Cost-only (random-weight) models: all four reranker architectures build offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalkit.models.loading import ARCHITECTURES, build_random_model
from tests.conftest import compose, cranfield_overrides

RERANKERS = {
    "cross-encoder/ms-marco-MiniLM-L6-v2": ("bert", 6, 384),
    "cross-encoder/ms-marco-MiniLM-L12-v2": ("bert", 12, 384),
    "BAAI/bge-reranker-v2-m3": ("xlm-roberta", 24, 1024),
    "jinaai/jina-reranker-v2-base-multilingual": ("xlm-roberta", 12, 768),
}
SMALL = {
    "num_hidden_layers": 1,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


@pytest.mark.parametrize("model", sorted(RERANKERS))
def test_shipped_architectures_match_design(model):
    kind, layers, hidden = RERANKERS[model]
    settings = json.loads((ARCHITECTURES / f"{model.replace('/', '-')}.json").read_text())
    assert (settings["model_type"], settings["num_hidden_layers"], settings["hidden_size"]) == (
        kind,
        layers,
        hidden,
    )


@pytest.mark.parametrize("model", sorted(RERANKERS))
def test_cost_only_reranker_builds_and_scores(model, tmp_path):
    from sentence_transformers import CrossEncoder

    from evalkit.rerank.cross_encoder import CrossEncoderReranker

    folder = build_random_model(model, "cross_encoder", tmp_path, shrink=SMALL)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == RERANKERS[model][0]
    assert config["vocab_size"] in (30522, 250002)
    scorer = CrossEncoderReranker(
        CrossEncoder(str(folder), device="cpu", max_length=64), batch_size=4, show_progress=False
    )
    pairs = [("wind tunnel", "a wind tunnel test"), ("heat", "heat flux")] * 3
    scores = scorer.score(pairs)
    assert scores.shape == (6,) and scores.dtype == np.float32 and np.isfinite(scores).all()
    assert np.array_equal(scorer.score(pairs), scores)  # deterministic, run to run
    # one pair in two rows of a batch: equal to float32 rounding (a GEMM's tail rows take
    # another kernel), and different pairs differ
    assert scores[0] == pytest.approx(scores[2], rel=1e-5) and scores[0] != scores[1]


@pytest.mark.slow  # an end-to-end run in a subprocess (the fast tier stays under 3 min)
def test_full_size_minilm_l6_cost_only_run_marks_quality_not_meaningful(tmp_path, session_cache):
    from evalkit.runner import run_experiment

    cfg = compose(
        cranfield_overrides(
            session_cache,
            "reranker=minilm_l6",
            "reranker.weights=random",
            "pipeline.depth=2",
            "dataset.max_queries=3",
            "reranker.max_length=128",
            "latency.depths=[1,2]",
        )
    )
    result = run_experiment(cfg, tmp_path / "cost")
    metrics = result.metrics
    assert metrics["quality_meaningful"] is False
    # cost-only: the reranked quality pass is skipped, latency and throughput are measured
    assert "reranked" not in metrics and not (tmp_path / "cost" / "run.reranked.trec").exists()
    assert "quality pass was skipped" in metrics["quality_note"]
    assert set(result.per_query.stage) == {"first_stage"}
    assert result.identity.reranked  # a two-stage system whose quality was not measured
    latency = json.loads((tmp_path / "cost" / "latency.json").read_text())
    assert [point["depth"] for point in latency["depth_curve"]] == [1, 2]
    assert not (tmp_path / "cost" / "latency_vs_depth.png").exists()  # records never draw
    from evalkit.analysis.run_plots import write_run_plots

    write_run_plots(result)  # the API and the CLI draw after saving
    assert (tmp_path / "cost" / "latency_vs_depth.png").is_file()
    assert "rerank" in (tmp_path / "cost" / "latency_vs_depth.csv").read_text()
    offline = latency["offline"]
    assert offline["rerank_pairs_per_second"] > 0
    assert offline["rerank_pairs_per_second_source"].startswith("6 of the run's own top-2 pairs")
    weights = json.loads(
        (session_cache / "random_models")
        .joinpath("cross-encoder-ms-marco-MiniLM-L6-v2-cross_encoder-seed0", "config.json")
        .read_text()
    )
    assert weights["num_hidden_layers"] == 6 and weights["hidden_size"] == 384


def test_cost_only_bi_encoder_builds_and_embeds(tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = build_random_model(
        "sentence-transformers/all-MiniLM-L6-v2", "bi_encoder", tmp_path, shrink=SMALL
    )
    model = SentenceTransformer(str(folder), device="cpu")
    embeddings = model.encode(["wind tunnel", "heat transfer in slabs"])
    assert embeddings.shape == (2, 32)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_torch_backend_dtypes_build_on_cpu(dtype, tiny_cross_encoder, session_cache):
    from evalkit.config import build_scorer, validate

    def scorer(dtype):
        return build_scorer(
            validate(
                compose(
                    [
                        f"reranker.model={tiny_cross_encoder}",
                        f"reranker.dtype={dtype}",
                        "reranker.device=cpu",
                        f"cache.dir={session_cache}",
                        "show_progress=false",
                    ]
                )
            )
        )

    pairs = [(f"query {i}", f"document about topic {i * 7 % 11} " * (i % 5 + 1)) for i in range(40)]
    scores = scorer(dtype).score(pairs)
    reference = scorer("fp32").score(pairs)
    assert scores.dtype == np.float32  # upcast before anything else sees them
    # bf16 keeps 8 mantissa bits: within 2% of fp32 (this random tiny model's scores are
    # too close together for rank stability to be a fair check)
    assert np.abs(scores - reference).max() <= 0.02 * np.abs(reference).max()
    assert scorer(dtype).fingerprint != scorer("fp16").fingerprint


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_other_backends_build_and_score(backend, tiny_cross_encoder, session_cache):
    """The test extras install both runtimes, so each builds (a missing runtime's message
    is test_backends.py::test_a_missing_runtime_names_the_install's business)."""
    from evalkit.config import build_scorer, validate

    config = validate(
        compose(
            [
                f"reranker.model={tiny_cross_encoder}",
                f"reranker.backend={backend}",
                "reranker.device=cpu",
                f"cache.dir={session_cache}",
            ]
        )
    )
    scorer = build_scorer(config)
    assert f"|{backend}-none|" in scorer.fingerprint  # the runtime is part of the cache key
    scores = scorer.score([("q", "d"), ("wing flutter", "flutter of a swept wing")])
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_cost_only_quality_pass_runs_when_asked(tmp_path, session_cache):
    from evalkit.runner import run_experiment

    cfg = compose(
        cranfield_overrides(
            session_cache,
            "reranker=minilm_l6_costonly",
            "pipeline.depth=2",
            "dataset.max_queries=3",
            "reranker.max_length=64",
            "eval.cost_only_quality=true",
            "latency.enabled=false",
        )
    )
    metrics = run_experiment(cfg, tmp_path / "cost").metrics
    assert metrics["quality_meaningful"] is False and "reranked" in metrics
    assert "plumbing check" in metrics["quality_note"]


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [
        ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse avx2 vaes\n", False),
        ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n", True),  # ARM
        ("processor\t: 0\nmodel name\t: unknown\n", None),  # no flags line
    ],
)
def test_cpu_bf16_read_from_the_flags(cpuinfo, expected, tmp_path):
    from evalkit.env import cpu_has_bf16

    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_has_bf16(tmp_path / "cpuinfo") is expected
    assert cpu_has_bf16(tmp_path / "missing") is None


def test_emulated_bf16_on_cpu_is_said_once(monkeypatch, caplog):
    import torch

    import evalkit.env
    from evalkit.models import loading

    monkeypatch.setattr(loading, "_WARNED", set())
    monkeypatch.setattr(evalkit.env, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="evalkit.models.loading"):
        assert loading.resolve_dtype("bf16", "cpu") is torch.bfloat16
        assert loading.resolve_dtype("bf16", "cpu") is torch.bfloat16
        assert loading.resolve_dtype("fp32", "cpu") is torch.float32
    said = [r.getMessage() for r in caplog.records if "emulates" in r.getMessage()]
    assert len(said) == 1 and "dtype=fp32" in said[0]
    caplog.clear()
    monkeypatch.setattr(loading, "_WARNED", set())
    monkeypatch.setattr(evalkit.env, "cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="evalkit.models.loading"):
        loading.resolve_dtype("bf16", "cpu")
    assert not [r for r in caplog.records if "emulates" in r.getMessage()]
