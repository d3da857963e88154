"""Scale features: FAISS vs exact, sharded resumable encoding, the cache claim protocol
under concurrent processes, and sweeps through real Hydra launchers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from evalkit.retrieve.dense import exact_top_k
from evalkit.retrieve.faiss_index import build_index, search_index
from evalkit.retrieve.shards import encode_sharded
from tests.conftest import cranfield_overrides
from tests.test_e2e import evalkit_run


def unit_vectors(rows: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def test_faiss_flat_ranks_exactly_like_exact_search():
    docs, queries = unit_vectors(5000), unit_vectors(20, seed=1)
    exact_scores, exact_indices = exact_top_k(queries, docs, k=50, chunk_size=700)
    scores, indices = search_index(build_index(docs, "flat"), queries, 50)
    assert (indices == exact_indices).all()
    assert np.allclose(scores, exact_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_recover_most_of_the_exact_top_10(kind):
    docs, queries = unit_vectors(5000), unit_vectors(20, seed=1)
    _, exact = exact_top_k(queries, docs, k=10)
    _, approx = search_index(build_index(docs, kind), queries, 10, nprobe=64, ef_search=256)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9, recall


def fake_encoder(calls: list[int], fail_on_call: int | None = None):
    """Deterministic 'embeddings' of texts; optionally crashes on the Nth call."""

    def encode(texts):
        calls.append(len(texts))
        if fail_on_call is not None and len(calls) == fail_on_call:
            raise RuntimeError("killed mid-encoding")
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.array([np.random.default_rng(s).normal(size=3) for s in seeds], np.float32)

    return encode


def test_sharded_encoding_resumes_after_a_crash(tmp_path):
    texts = [f"passage number {i} " * (i % 7 + 1) for i in range(1000)]
    reference = encode_sharded(texts, fake_encoder([]), tmp_path / "ref", "m", 300).to_array()
    calls: list[int] = []
    with pytest.raises(RuntimeError, match="killed"):
        encode_sharded(texts, fake_encoder(calls, fail_on_call=3), tmp_path / "c", "m", 300)
    assert calls == [300, 300, 300]  # shards 0 and 1 were saved, shard 2 crashed
    resumed_calls: list[int] = []
    resumed = encode_sharded(texts, fake_encoder(resumed_calls), tmp_path / "c", "m", 300)
    assert resumed_calls == [300, 100]  # only the missing shards
    assert np.array_equal(resumed.to_array(), reference)
    assert resumed.shape == (1000, 3) and len(resumed.blocks) == 4


def test_shard_jobs_split_the_work_and_the_final_run_encodes_nothing(tmp_path):
    texts = [f"text {i}" for i in range(1000)]
    calls: list[int] = []
    for job in ((0, 2), (1, 2)):
        assert encode_sharded(texts, fake_encoder(calls), tmp_path, "m", 250, job) is None
    assert calls == [250, 250, 250, 250]
    final_calls: list[int] = []
    matrix = encode_sharded(texts, fake_encoder(final_calls), tmp_path, "m", 250)
    assert final_calls == [] and matrix.shape == (1000, 3)
    queries = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    _, indices = exact_top_k(queries, matrix, k=5, chunk_size=64)  # across shard borders
    brute = np.argsort(-(queries @ matrix.to_array().T), axis=1, kind="stable")[:, :5]
    assert (indices == brute).all()


# A barrier, not a sleep: each process says it is about to claim the artifact; whichever
# computes it waits (inside the lock) until both have said so, so the other one is claiming
# while the first computes.
CLAIMER = textwrap.dedent("""
    import os, sys, time, pathlib, numpy as np
    from evalkit.cache import cached_file
    path, log = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    (path.parent / f"ready-{os.getpid()}").write_text("")
    def compute(tmp):
        with log.open("a") as handle:
            handle.write("computed\\n")
        deadline = time.monotonic() + 60
        while len(list(path.parent.glob("ready-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        np.save(tmp.open("wb"), np.arange(5.0), allow_pickle=False)
    print(cached_file(path, compute, lambda p: np.load(p)).tolist())
""")


def test_two_processes_claim_one_artifact_and_compute_it_once(tmp_path):
    path, log = tmp_path / "artifact.npy", tmp_path / "log.txt"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(path), str(log)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=120)[0].strip() for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert outputs == ["[0.0, 1.0, 2.0, 3.0, 4.0]"] * 2
    assert log.read_text() == "computed\n"


WRITER = textwrap.dedent("""
    import sys
    from evalkit.cache import PairScoreCache, pair_key
    cache = PairScoreCache(sys.argv[1])
    tag = sys.argv[2]
    for chunk in range(20):
        cache.put_many("model", [(pair_key(tag, f"doc {chunk} {i}"), float(i))
                                 for i in range(250)])
""")


def test_concurrent_score_writers_leave_a_complete_readable_cache(tmp_path):
    import sqlite3

    from evalkit.cache import PairScoreCache

    database = tmp_path / "scores.sqlite"
    PairScoreCache(database).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(database), tag]) for tag in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    assert PairScoreCache(database).count("model") == 2 * 20 * 250
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def sweep_runs(root):
    runs = {}
    for marker in root.rglob("complete.json"):
        folder = marker.parent
        config = (folder / "config.yaml").read_text()
        key = ("minilm_l6" in config, "depth: 5" in config)
        runs[key] = {
            name: (folder / name).read_text() for name in ("run.first_stage.trec", "metrics.json")
        }
    return runs


@pytest.fixture(scope="module")
def sequential_sweep(tmp_path_factory, tiny_cross_encoder):
    root = tmp_path_factory.mktemp("sequential")
    evalkit_run(
        "-m",
        *cranfield_overrides(root / "cache", "latency.enabled=false", "dataset.max_queries=40"),
        f"reranker.model={tiny_cross_encoder}",
        "pipeline.depth=5,10",
        f"hydra.sweep.dir={root}/sweep",
    )
    return sweep_runs(root / "sweep")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local_parallel", "submitit_local", "ray_cluster"])
def test_launcher_sweep_matches_the_sequential_sweep(
    launcher, tmp_path, tiny_cross_encoder, sequential_sweep
):
    extra = {
        "local_parallel": ["hydra.launcher.n_jobs=2"],
        "submitit_local": ["hydra.launcher.timeout_min=20"],
        "ray_cluster": [
            "+hydra.launcher.ray.init.num_cpus=2",
            "+hydra.launcher.ray.init.include_dashboard=false",
        ],
    }[launcher]
    evalkit_run(
        "-m",
        f"hydra/launcher={launcher}",
        *extra,
        *cranfield_overrides(
            tmp_path / "shared-cache", "latency.enabled=false", "dataset.max_queries=40"
        ),
        f"reranker.model={tiny_cross_encoder}",
        "pipeline.depth=5,10",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    runs = sweep_runs(tmp_path / "sweep")
    assert len(runs) == 2
    for key, files in runs.items():
        assert files["run.first_stage.trec"] == sequential_sweep[key]["run.first_stage.trec"]
        ours, theirs = (
            json.loads(files["metrics.json"]),
            json.loads(sequential_sweep[key]["metrics.json"]),
        )
        assert (
            ours["reranked"] == theirs["reranked"] and ours["first_stage"] == theirs["first_stage"]
        )


@pytest.mark.slow
def test_dense_faiss_flat_run_equals_exact_run(tmp_path, minilm_path, session_cache):
    from evalkit.runner import run_experiment
    from tests.conftest import compose

    results = {}
    for index in ("exact", "flat"):
        cfg = compose(
            cranfield_overrides(
                session_cache,
                "retriever=minilm",
                f"retriever.model={minilm_path}",
                "reranker=none",
                f"retriever.index={index}",
                "latency.enabled=false",
            )
        )
        results[index] = run_experiment(cfg, tmp_path / index).metrics["first_stage"]
        text = (tmp_path / index / "run.first_stage.trec").read_text().split("\n")
        results[index + "-top"] = [line.split()[2] for line in text if line][:2000]
    assert results["exact-top"] == results["flat-top"]
    assert results["exact"] == pytest.approx(results["flat"], abs=1e-12)
