"""The typed records over a run's files, and the folder format's version."""

from __future__ import annotations

import json

import pytest

from evalkit.errors import DataError
from evalkit.results import RunResult
from tests.fakeruns import make_run


def test_records_read_what_the_files_hold(tmp_path):
    folder = make_run(tmp_path, "a", [0.1, 0.4, 0.3], [0.3, 0.5, 0.2])
    result = RunResult.load(folder)
    metrics = result.metrics_record
    assert metrics.first_stage == result.metrics["first_stage"]
    assert metrics.reranked == result.metrics["reranked"]
    assert metrics.headline_value == next(iter(result.metrics["reranked"].values()))
    online = result.latency_record.online
    assert online.stages["total"].p95_ms == result.latency["online"]["total"]["p95_ms"]
    assert result.load_record is None  # no load test in this run


def test_a_folder_of_format_1_loads_and_a_newer_format_is_refused(tmp_path):
    folder = make_run(tmp_path, "a", [0.1, 0.4, 0.3], [0.3, 0.5, 0.2])
    metrics_file = folder / "metrics.json"
    data = json.loads(metrics_file.read_text())
    assert data["format"] == 2
    del data["format"]  # as every folder written before the format was recorded
    metrics_file.write_text(json.dumps(data))
    assert RunResult.load(folder).metrics_record.first_stage == data["first_stage"]
    data["format"] = 3
    metrics_file.write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=r"has format 3; this evalkit reads formats 1 to 2.*upgrade"
    ):
        RunResult.load(folder)


def test_records_round_trip_through_their_dicts(tmp_path):
    from evalkit.results.run_records import LoadCurve, RunLatency, RunMetrics

    folder = make_run(tmp_path, "a", [0.1, 0.4, 0.3], [0.3, 0.5, 0.2])
    result = RunResult.load(folder)
    metrics = result.metrics_record
    assert RunMetrics.from_dict(metrics.to_dict()) == metrics
    latency = result.latency_record
    assert RunLatency.from_dict(latency.to_dict()) == latency
    curve = LoadCurve.from_dict(
        {
            "points": [{"offered_qps": 2.0, "p95_ms": 9.0, "saturated": False}],
            "conditions": {"max_batch_pairs": 8, "max_wait_ms": 5.0, "seed": 1},
            "service_model": {"a": 1.0},
            "query_shapes": [[3, 30]],
            "simulated": {"2": [{"offered_qps": 2.0, "p95_ms": 7.0, "saturated": False}]},
            "validation": [{"offered_qps": 2.0, "relative_error": 0.1}],
            "validation_tolerance": 0.25,
        }
    )
    assert LoadCurve.from_dict(curve.to_dict()) == curve


def test_run_folders_reached_through_symlinks_are_found_once(tmp_path):
    """A sweep folder with a linked-in run, and a link loop: the linked run is read (it
    was skipped silently before), the loop is not followed forever."""
    import evalkit

    elsewhere = tmp_path / "elsewhere"
    make_run(elsewhere, "reranked", [0.1, 0.4], [0.3, 0.5])
    sweep = tmp_path / "sweep"
    make_run(sweep, "bm25", [0.1, 0.4])
    (sweep / "linked").symlink_to(elsewhere / "reranked", target_is_directory=True)
    (sweep / "loop").symlink_to(sweep, target_is_directory=True)
    names = sorted(r.identity.name() for r in evalkit.load(sweep))
    assert names == ["bm25", "bm25 → ce@100"]


def test_folders_written_before_resume_under_the_same_config():
    """Settings added since (latency.target_p95_ms, latency.threads, first_stage_k's
    'none' default) leave the config hash as it was at their defaults, so rerunning a
    sweep resumes the folders the previous release wrote instead of refusing them. The
    values are what commit a6c493e (session 3) computes for the same overrides."""
    from evalkit import compose
    from evalkit.config import validate
    from evalkit.runner import config_hash

    plain = validate(compose(["dataset=cranfield", "reranker=none"]))
    reranked = validate(
        compose(["dataset=cranfield", "reranker=biencoder_packaged", "pipeline.depth=30"])
    )
    assert config_hash(plain) == "9946d32b490dc9de42c180023f40addc"
    assert config_hash(reranked) == "573a12c361fd811425bc169190e71be3"
    timed = validate(compose(["dataset=cranfield", "reranker=none", "latency.threads=1"]))
    assert config_hash(timed) != config_hash(plain)  # a value set is part of the config
