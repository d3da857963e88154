"""reranker=http against a real server over a real socket (tests/rerank_server.py): the
protocol and its dialects, retries and clear failures, the key never written, resumption
from cached scores, and the price column in report and decide."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from evalkit.errors import ConfigError, ServiceError
from evalkit.rerank.http import HttpReranker
from evalkit.trec import read_trec_run
from tests.rerank_server import RerankServer
from tests.test_e2e import evalkit_cli, evalkit_run
from tests.test_run_file import overrides

PAIRS = [
    ("wing flutter", "flutter of a swept wing"),
    ("wing flutter", "heat transfer in a boundary layer"),
    ("heat transfer", "heat transfer in a boundary layer"),
    ("wing flutter", "wing wing flutter"),
    ("heat transfer", "supersonic flutter"),
]
# word overlap, by hand: {wing, flutter} & {flutter, of, a, swept, wing} = 2, ...
EXPECTED = [2.0, 0.0, 2.0, 2.0, 0.0]


def client(server: RerankServer, **settings) -> HttpReranker:
    return HttpReranker(server.url, "test-model", backoff_s=0.0, **settings)


@pytest.mark.parametrize(
    ("dialect", "voyage", "path"),
    [("cohere", False, "/v2/rerank"), ("voyage", True, "/v1/rerank"), ("tei", False, "/rerank")],
)
def test_scores_come_back_in_input_order(dialect, voyage, path):
    with RerankServer(voyage=voyage) as server:
        reranker = client(server, dialect=dialect, max_documents=2, concurrency=3)
        done = {}
        scores = reranker.score(PAIRS, on_done=lambda i, v: done.update(zip(i, v, strict=True)))
    assert scores.tolist() == EXPECTED  # the server answers sorted by score, not by index
    assert done == dict(enumerate(EXPECTED))
    # grouped by query, two documents per request: wing flutter 3 -> 2 requests, heat 2 -> 1
    assert sorted(r["documents"] for r in server.requests) == [1, 2, 2]
    assert {r["path"] for r in server.requests} == {path}
    assert reranker.request_stats()["requests"] == 3


@pytest.mark.parametrize("fault", ["429", "500", "slow"])
def test_rate_limits_server_errors_and_timeouts_are_retried(fault):
    with RerankServer() as server:
        server.faults = [fault, fault]
        server.slow_s = 1.0
        reranker = client(server, timeout_s=0.3, max_retries=3, concurrency=1)
        scores = reranker.score(PAIRS[:2])
    assert scores.tolist() == EXPECTED[:2]
    assert reranker.retries == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("not-json", "answered something that is not JSON: b'<html>gateway</html>'"),
        ("short", "1 scores for 2 documents"),
        ("die", "failed 3 time(s), last with HTTP 500"),
    ],
)
def test_unusable_answers_fail_with_a_clear_error(fault, message):
    with RerankServer() as server:
        server.faults = [fault]
        with pytest.raises(ServiceError, match=message.replace("(", r"\(").replace(")", r"\)")):
            client(server, max_retries=2, concurrency=1).score(PAIRS[:2])


def test_the_key_comes_from_the_environment(monkeypatch):
    with RerankServer(key="s3cret-key") as server:
        monkeypatch.delenv("EVALKIT_TEST_KEY", raising=False)
        with pytest.raises(ConfigError, match=r"EVALKIT_TEST_KEY .* is not set"):
            client(server, api_key_env="EVALKIT_TEST_KEY").score(PAIRS[:1])
        monkeypatch.setenv("EVALKIT_TEST_KEY", "wrong")
        with pytest.raises(ServiceError, match=r"HTTP 401.*check the key in \$EVALKIT_TEST_KEY"):
            client(server, api_key_env="EVALKIT_TEST_KEY").score(PAIRS[:1])
        monkeypatch.setenv("EVALKIT_TEST_KEY", "s3cret-key")
        assert client(server, api_key_env="EVALKIT_TEST_KEY").score(PAIRS[:1]).tolist() == [2.0]
    assert "wrong" not in repr(client(server, api_key_env="EVALKIT_TEST_KEY").__dict__)


def test_an_unreachable_endpoint_is_retried_then_named():
    with RerankServer() as server:
        url = server.url
    reranker = HttpReranker(url, "m", max_retries=1, backoff_s=0.0)
    with pytest.raises(ServiceError, match=f"{url}/v2/rerank failed 2 time"):
        reranker.score(PAIRS[:1])


# --- through evalkit-run, evalkit-report and evalkit-decide ----------------------------


def http_settings(server, *extra):
    return [
        "reranker=http",
        f"reranker.url={server.url}",
        "reranker.model=word-overlap",
        "reranker.api_key_env=EVALKIT_TEST_KEY",
        "reranker.max_documents=2",
        "reranker.backoff_s=0",
        *extra,
    ]


def run_cli(tmp_path, folder, *extra, check=True):
    env = {**os.environ, "EVALKIT_TEST_KEY": "k-9f3a-never-written"}
    command = [
        sys.executable,
        "-c",
        "from evalkit.cli import run_main; run_main()",
        *overrides(tmp_path, *extra),
        f"hydra.run.dir={tmp_path / folder}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


@pytest.mark.slow  # an end-to-end evalkit-run in a subprocess
def test_http_reranker_end_to_end(tmp_path):
    with RerankServer(key="k-9f3a-never-written") as server:
        run_cli(tmp_path, "http", *http_settings(server, "reranker.price_per_1k_searches=2.0"))
    plugin = ["reranker=python", "reranker.target=tests.plugin_reranker:make"]
    evalkit_run(*overrides(tmp_path, *plugin), f"hydra.run.dir={tmp_path / 'plugin'}")
    http = json.loads((tmp_path / "http" / "metrics.json").read_text())
    local = json.loads((tmp_path / "plugin" / "metrics.json").read_text())
    # the same scoring function, served over HTTP or called in-process: the same numbers
    assert http["reranked"] == local["reranked"]
    assert all(r["auth"] == "Bearer k-9f3a-never-written" for r in server.requests)

    # the price: ceil(candidates in the top 5 / 2 per request) searches per query, $2 / 1k
    run = read_trec_run(tmp_path / "http" / "run.first_stage.trec")
    head = run[run.groupby("query_id").cumcount() < 5] if len(run) else run
    searches = [math.ceil(n / 2) for n in head.groupby("query_id").size()]
    expected = sum(searches) * 2.0 / 1000 / http["num_queries"] * 1000
    assert http["cost"]["usd_per_1k_queries"] == pytest.approx(expected)
    latency = json.loads((tmp_path / "http" / "latency.json").read_text())
    assert latency["requests"]["requests"] == len(server.requests)

    # the key is nowhere on disk
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert b"k-9f3a-never-written" not in path.read_bytes(), path

    report = evalkit_cli("report", str(tmp_path))
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "usd_per_1k_queries" in markdown and f"${expected:,.4g}" in markdown
    decide = evalkit_cli(
        "decide",
        str(tmp_path),
        "--p95-ms",
        "100000",
        "--max-usd-per-1k",
        str(expected / 2),
        "--dataset",
        "toy",
    )
    assert decide.returncode == 0, decide.stderr
    line = next(x for x in decide.stdout.splitlines() if "http@5" in x)
    assert f"${expected:,.4g}/1k queries" in line and "exceeds the" in line


@pytest.mark.slow  # an end-to-end evalkit-run in a subprocess
def test_a_killed_http_run_resumes_from_the_cached_scores(tmp_path):
    with RerankServer(key="k-9f3a-never-written") as server:
        server.faults = [None, None, "die"]
        failed = run_cli(
            tmp_path,
            "http",
            *http_settings(server, "reranker.max_retries=0", "reranker.concurrency=1"),
            check=False,
        )
        assert failed.returncode != 0
        assert "failed 1 time(s), last with HTTP 500" in failed.stderr
        assert "k-9f3a-never-written" not in failed.stderr + failed.stdout
        first = server.documents_scored
        assert first == 4  # two answered requests of two documents
        server.dead, server.requests = False, []
        run_cli(tmp_path, "http", *http_settings(server, "reranker.concurrency=1"))
    result = json.loads((tmp_path / "http" / "metrics.json").read_text())
    plugin = ["reranker=python", "reranker.target=tests.plugin_reranker:make"]
    evalkit_run(*overrides(tmp_path, *plugin), f"hydra.run.dir={tmp_path / 'plugin'}")
    local = json.loads((tmp_path / "plugin" / "metrics.json").read_text())
    assert result["reranked"] == local["reranked"]
    evaluation = [r for r in server.requests if r["answered"]]
    assert evaluation, "the second run asked for the remaining pairs"
    latency = json.loads((tmp_path / "http" / "latency.json").read_text())
    offline = latency["offline"]
    # the evaluation pass asked only for what the first run had not received
    assert offline["rerank_pairs_scored_in_evaluation"] == result_pairs(tmp_path) - first


def result_pairs(tmp_path) -> int:
    run = read_trec_run(tmp_path / "http" / "run.first_stage.trec")
    return int(np.minimum(run.groupby("query_id").size(), 5).sum())


def test_a_cross_encoder_served_over_http_scores_like_the_local_one(tmp_path, tiny_cross_encoder):
    """The server wraps a local model folder (as TEI or Infinity would): the same logits."""
    from evalkit.config import build_scorer, validate
    from tests.conftest import compose
    from tests.rerank_server import cross_encoder_scorer

    local = build_scorer(
        validate(
            compose(
                [
                    "reranker=minilm_l6",
                    f"reranker.model={tiny_cross_encoder}",
                    f"cache.dir={tmp_path}/cache",
                    "show_progress=false",
                ]
            )
        )
    )
    with RerankServer(cross_encoder_scorer(tiny_cross_encoder)) as server:
        remote = client(server, dialect="tei", max_documents=2)
        assert np.allclose(remote.score(PAIRS), local.score(PAIRS), atol=1e-5)


@pytest.mark.slow  # an end-to-end run in a subprocess (the fast tier stays under 3 min)
def test_a_run_killed_mid_way_pays_only_for_the_rest(tmp_path, monkeypatch):
    """SIGKILL right after the first answered request is cached (as a pre-emption would):
    the rerun sends only the documents that were not answered."""
    with RerankServer(key="k-9f3a-never-written") as server:
        monkeypatch.setenv("EVALKIT_KILL_AT", "rerank_chunk")
        killed = run_cli(
            tmp_path, "http", *http_settings(server, "reranker.concurrency=1"), check=False
        )
        monkeypatch.delenv("EVALKIT_KILL_AT")
        assert killed.returncode == -9  # SIGKILL: no cleanup ran
        paid = server.documents_scored
        assert paid >= 1
        server.requests = []
        run_cli(tmp_path, "http", *http_settings(server, "reranker.concurrency=1"))
    latency = json.loads((tmp_path / "http" / "latency.json").read_text())
    assert latency["offline"]["rerank_pairs_scored_in_evaluation"] == result_pairs(tmp_path) - paid


def test_server_scores_keep_float64_precision():
    """Scores that differ beyond float32 precision stay different (they used to become
    ties, and the top 10 came back in doc-id order)."""
    from evalkit.rerank.http import HttpReranker

    reranker = HttpReranker("http://127.0.0.1:9", "m")
    payload = {"results": [{"index": 0, "relevance_score": 0.1 + 1e-9}]}
    payload["results"].append({"index": 1, "relevance_score": 0.1 + 2e-9})
    scores = reranker._parse(payload, 2)
    assert scores.dtype == np.float64 and scores[1] > scores[0]
    assert np.float32(scores[1]) == np.float32(scores[0])  # what a float32 cast would do
