"""The predicted p95 over all queries (measure/prediction.py) against the truth it predicts.

Synthetic queries whose rerank time is known: ``0.02 ms per token + 0.5 ms per pair``
times a lognormal noise, plus a first stage of about 2 ms. 30 of 400 are "timed"; the
prediction over all 400 is compared with the true p95 of all 400.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit.measure.prediction import predict_p95


def world(seed: int, timed: int = 30, total: int = 400):
    rng = np.random.default_rng(seed)
    ids = [f"q{i}" for i in range(total)]
    pairs = rng.integers(20, 101, total)
    tokens = pairs * rng.integers(80, 300, total)
    noise = rng.lognormal(0.0, 0.08, total)
    first = 2.0 + rng.exponential(0.2, total)
    rerank = (0.02 * tokens + 0.5 * pairs) * noise
    shapes = {q: (int(p), int(t)) for q, p, t in zip(ids, pairs, tokens, strict=True)}
    chosen = rng.choice(total, timed, replace=False)
    sample = [(ids[i], "") for i in chosen]
    rows = [
        (k, stage, ms)
        for k, i in enumerate(chosen)
        for stage, ms in (
            ("first_stage", first[i]),
            ("rerank", rerank[i]),
            ("total", first[i] + rerank[i]),
        )
    ]
    frame = pd.DataFrame(rows, columns=["query", "stage", "ms"])
    truth = float(np.percentile(first + rerank, 95))
    return frame, sample, shapes, ids, truth


@pytest.mark.parametrize("seed", range(20))
def test_the_predicted_p95_over_all_queries_is_near_the_true_one(seed):
    frame, sample, shapes, ids, truth = world(seed)
    out = predict_p95(frame, sample, shapes, ids)
    assert out["queries"] == 400 and out["check"]["timed_queries"] == 30
    assert out["p95_ms"] == pytest.approx(truth, rel=0.15)
    assert out["check"]["passes"]  # the model fits the timed ones
    assert out["label"].startswith("prediction")


def test_a_query_kept_unreranked_costs_only_its_first_stage():
    frame, sample, shapes, ids, _ = world(0)
    cheap = predict_p95(frame, sample, {q: (0, 0) for q in shapes}, ids)
    assert cheap["p95_ms"] < frame[frame.stage == "first_stage"].ms.max() + 1e-9


def test_too_few_timed_queries_or_no_rerank_stage_give_no_prediction():
    frame, sample, shapes, ids, _ = world(0, timed=4)
    assert predict_p95(frame, sample, shapes, ids) is None
    frame, sample, shapes, ids, _ = world(0)
    assert predict_p95(frame[frame.stage != "rerank"], sample, shapes, ids) is None


def test_a_check_that_fails_says_so():
    """Times that do not follow the shapes (the model's premise broken): the check fails."""
    frame, sample, shapes, ids, _ = world(1)
    rng = np.random.default_rng(5)
    scrambled = frame.copy()
    rerank = scrambled.stage == "rerank"
    scrambled.loc[rerank, "ms"] = rng.permutation(scrambled.loc[rerank, "ms"].to_numpy()) * 3
    scrambled.loc[scrambled.stage == "total", "ms"] = scrambled.loc[rerank, "ms"].to_numpy() * 2
    out = predict_p95(scrambled, sample, shapes, ids)
    assert out["check"]["passes"] is False and out["check"]["relative_error"] > 0.15


def test_a_scorer_whose_token_lengths_fail_costs_the_prediction_not_the_run(caplog):
    """A plugin's ``token_lengths`` raising: no prediction, a warning, nothing else lost."""
    from types import SimpleNamespace

    from evalkit.data import load_beir_folder
    from evalkit.measure.latency import _predicted
    from evalkit.types import QUERY_ID
    from tests.conftest import TOY

    dataset = load_beir_folder(TOY)

    class Broken:
        max_length = None

        def token_lengths(self, pairs):
            raise ValueError("my plugin cannot count tokens")

    ids = dataset.queries[QUERY_ID].astype(str).tolist()
    first = pd.DataFrame({QUERY_ID: ids, "doc_id": dataset.corpus.doc_id.iloc[0], "score": 1.0})
    pipeline = SimpleNamespace(scorer=Broken(), selected=lambda run, data: set(ids))
    runs = SimpleNamespace(first_stage=first)
    frame, sample, *_ = world(0, timed=6, total=6)
    main = {"measured": 6, "depth": 3, "frame": frame}
    assert _predicted(None, pipeline, dataset, runs, sample, main) is None
    assert "no predicted p95 over all queries (ValueError: my plugin" in caplog.text
