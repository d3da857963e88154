"""Hostile inputs, round two: stale results, concurrent writers, corrupted caches, odd ids,
determinism, and the last-resort handler of every console script (docs/reliability.md)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from evalkit.errors import ConfigError, DataError
from evalkit.runner import claim_folder, run_experiment
from tests.conftest import REPO, TOY, compose


def toy_overrides(cache, data=TOY, *extra):
    return [
        "dataset=local",
        f"dataset.path={data}",
        f"cache.dir={cache}",
        "show_progress=false",
        "latency.max_queries=2",
        "latency.warmup=0",
        "latency.throughput_pairs=8",
        "pipeline.depth=5",
        *extra,
    ]


@pytest.fixture
def toy_copy(tmp_path):
    target = tmp_path / "toy"
    shutil.copytree(TOY, target)
    return target


def test_edited_qrels_are_never_served_stale(tmp_path, toy_copy):
    overrides = toy_overrides(tmp_path / "cache", toy_copy, "reranker=none")
    folder = tmp_path / "run"
    before = run_experiment(compose(overrides), folder).metrics["first_stage"]["nDCG@10"]
    qrels = toy_copy / "qrels" / "test.tsv"
    # q1's highly relevant document d1 becomes not relevant: q1's nDCG@10 changes
    qrels.write_text(qrels.read_text().replace("q1\td1\t2", "q1\td1\t0"))
    after = run_experiment(compose(overrides), folder).metrics["first_stage"]["nDCG@10"]
    fresh = run_experiment(compose(overrides), tmp_path / "fresh").metrics["first_stage"]
    assert after == fresh["nDCG@10"] and after != before


def test_a_second_writer_of_one_folder_fails_in_one_line(tmp_path):
    folder = tmp_path / "run"
    with (
        claim_folder(folder),
        pytest.raises(ConfigError, match="another evalkit run is writing into"),
    ):
        run_experiment(compose(toy_overrides(tmp_path / "c", TOY, "reranker=none")), folder)


def test_a_refused_run_rewrites_nothing(tmp_path):
    folder = tmp_path / "run"
    run_experiment(compose(toy_overrides(tmp_path / "c", TOY, "reranker=none")), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ConfigError, match="holds a finished run of a different config"):
        run_experiment(
            compose(toy_overrides(tmp_path / "c", TOY, "reranker=none", "seed=3")), folder
        )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not (folder / ".hydra").exists()


def _first_stage_run(cache, extra=()):
    from evalkit.config import validate
    from evalkit.data import load_dataset
    from evalkit.runner import build_pipeline

    config = validate(compose(toy_overrides(cache, TOY, "reranker=none", *extra)))
    dataset = load_dataset(config.dataset, cache)
    return build_pipeline(config).first_stage(dataset)[0]


def test_a_flipped_bit_in_a_cached_run_is_detected_and_recomputed(tmp_path, caplog):
    cache = tmp_path / "cache"
    clean = _first_stage_run(cache)
    [cached] = list((cache / "runs").glob("*.parquet"))
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0x01
    cached.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        again = _first_stage_run(cache)
    assert "is damaged" in caplog.text
    assert again.equals(clean)


def test_garbage_in_the_bm25_index_is_rebuilt(tmp_path, caplog):
    cache = tmp_path / "cache"
    overrides = toy_overrides(cache, TOY, "reranker=none", "cache.enabled=true")
    clean = run_experiment(compose(overrides), tmp_path / "a").metrics["first_stage"]
    [index] = [p for p in (cache / "bm25").iterdir() if p.is_dir()]
    for npy in index.glob("*.npy"):
        npy.write_bytes(npy.read_bytes()[:128] + np.random.default_rng(0).bytes(64))
    shutil.rmtree(cache / "runs")  # force a new search with the index
    with caplog.at_level("WARNING"):
        again = run_experiment(compose(overrides), tmp_path / "b").metrics["first_stage"]
    assert "cached BM25 index" in caplog.text and again == clean


def test_edited_pair_scores_fail_their_check_and_are_recomputed(tmp_path, tiny_cross_encoder):
    cache = tmp_path / "cache"
    overrides = toy_overrides(
        cache,
        TOY,
        "reranker=minilm_l6",
        f"reranker.model={tiny_cross_encoder}",
        "latency.enabled=false",
    )
    first = run_experiment(compose(overrides), tmp_path / "a")
    with sqlite3.connect(cache / "pair_scores.sqlite") as connection:
        connection.execute("UPDATE scores_v2 SET score = -score")  # integrity_check stays ok
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    second = run_experiment(compose(overrides), tmp_path / "b")
    assert second.metrics["reranked"] == first.metrics["reranked"]
    assert second.run("reranked").equals(first.run("reranked"))


def test_a_garbage_embedding_shard_is_recomputed(tmp_path):
    from evalkit.cache import _load_npy, _save_npy, cached_file

    path = tmp_path / "shard.npy"
    calls = []

    def compute(tmp):
        calls.append(1)
        _save_npy(tmp, np.arange(6, dtype=np.float32).reshape(3, 2))

    first = np.array(cached_file(path, compute, lambda p: _load_npy(p, 3)))
    path.write_bytes(b"\x93NUMPY garbage")
    second = np.array(cached_file(path, compute, lambda p: _load_npy(p, 3)))
    assert len(calls) == 2 and np.array_equal(first, second)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"_id": "a b", "title": "", "text": "x"}', "document id 'a b' is empty or holds"),
        ('{"_id": "", "title": "", "text": "x"}', "document id '' is empty"),
        ('{"_id": "a\\nb", "title": "", "text": "x"}', "whitespace or control characters"),
        ('{"_id": ["a"], "title": "", "text": "x"}', "document id must be a string"),
        ('{"_id": "d99", "title": "", "text": {"nested": 1}}', "field 'text' must be a string"),
    ],
)
def test_ids_that_break_trec_files_are_refused_with_file_and_line(toy_copy, line, message):
    from evalkit.data import load_beir_folder

    corpus = toy_copy / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + line + "\n")
    with pytest.raises(DataError, match=r"corpus\.jsonl:13") as error:
        load_beir_folder(toy_copy)
    assert message in str(error.value)


def test_a_qrels_id_with_a_space_is_refused(toy_copy):
    from evalkit.data import load_beir_folder

    qrels = toy_copy / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q1\td 1\t1\n")
    with pytest.raises(DataError, match=r"test.tsv:12"):
        load_beir_folder(toy_copy)


def test_a_checkpoint_without_a_head_scores_the_same_every_run(tmp_path, minilm_path):
    from evalkit.config import build_scorer, validate

    config = validate(
        compose(toy_overrides(tmp_path, TOY, "reranker=minilm_l6", f"reranker.model={minilm_path}"))
    )
    pairs = [("wind tunnel", "wind tunnel tests"), ("heat", "jet noise")]
    first = build_scorer(config).score(pairs)
    second = build_scorer(config).score(pairs)
    assert np.array_equal(first, second)
    assert "head-seed0" in build_scorer(config).fingerprint


SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
BREAK = {  # a function each command calls, patched to fail unexpectedly
    "evalkit-run": ("evalkit.runner.run_experiment", ["dataset=cranfield", "reranker=none"]),
    "evalkit-report": ("evalkit.analysis.report_folder.build_report", ["RESULTS"]),
    "evalkit-decide": ("evalkit.decide", ["RESULTS", "--p95-ms", "10"]),
    "evalkit-cache": ("evalkit.cache_root.cache_sizes", ["info"]),
    "evalkit-eval": ("evalkit.external.evaluate_runs", ["run.trec", "--qrels", "qrels.txt"]),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_console_script_turns_a_crash_into_one_line_and_a_log(
    script, tmp_path, monkeypatch, capsys
):
    import importlib
    import sys

    assert script in BREAK, f"{script} has no last-resort test: add it to BREAK"
    target, args = BREAK[script]
    module_name, attribute = target.rsplit(".", 1)

    def explode(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(importlib.import_module(module_name), attribute, explode)
    args = [str(tmp_path) if a == "RESULTS" else a for a in args]
    if script == "evalkit-run":
        args += [f"hydra.run.dir={tmp_path}/run", f"cache.dir={tmp_path}/c"]
    module, function = SCRIPTS[script].split(":")
    monkeypatch.setattr(sys, "argv", [script, *args])
    entry = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_info:
        entry() if script == "evalkit-run" else entry(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("evalkit: internal error: RuntimeError: simulated bug")
    log = err[-1].split("the full trace is in ")[1].split(" (please report")[0]
    assert "Traceback" in Path(log).read_text() and "Traceback" not in "\n".join(err)
    if script == "evalkit-run":
        assert log == str(tmp_path / "run.evalkit-error.log")  # beside the folder...
        assert not (tmp_path / "run").exists()  # ...which a failed run does not leave


def test_decision_json_is_valid_json_with_nan_free_numbers(tmp_path):
    from tests.fakeruns import make_run

    make_run(tmp_path, "a", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    import evalkit

    decision = evalkit.decide(tmp_path, p95_ms=1000)
    text = json.dumps(decision.to_json(), allow_nan=False)
    assert json.loads(text)["budget"]["p95_ms"] == 1000.0


# --- round three: bring-your-own and load settings -----------------------------------

HTTP = ["reranker=http", "reranker.model=m", "reranker.url=http://x"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["latency.load_qps=[0]"], "latency.load_qps values must be positive QPS"),
        (["latency.load_qps=[2,-1]"], "latency.load_qps values must be positive QPS"),
        (["latency.load_queries=5"], "latency.load_queries must be >= 20"),
        (["latency.max_wait_ms=-1"], "latency.max_wait_ms must be >= 0.0"),
        (["reranker=http", "reranker.model=m"], "reranker=http needs reranker.url=http(s)://"),
        (
            ["reranker=http", "reranker.model=m", "reranker.url=ftp://x"],
            "reranker=http needs reranker.url=http(s)://",
        ),
        (
            [
                "reranker=http",
                "reranker.model=m",
                "reranker.url=http://x",
                "reranker.concurrency=0",
            ],
            "reranker.concurrency must be between 1 and 256",
        ),
        (
            [*HTTP, "reranker.dialect=x"],
            "reranker.dialect='x' is not one of",
        ),
        (
            ["reranker=python", "reranker.target=a.b:c", "reranker.backend=onnx"],
            "reranker.backend=onnx does not run reranker.kind=python (it runs on ['torch'])",
        ),
        (["reranker.price_per_1k_searches=-2"], "reranker.price_per_1k_searches must be >= 0.0"),
        (["dataset=hub"], "dataset.source=hub needs dataset.hub_id"),
        (["dataset=irds"], "dataset=irds needs an ir_datasets id"),
    ],
)
def test_bad_load_and_bring_your_own_settings_are_one_line(overrides, message):
    from evalkit.config import validate
    from evalkit.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose(overrides))


def test_colbert_without_pylate_names_the_install(tmp_path, monkeypatch):
    import importlib.util

    from evalkit.errors import ModelError
    from evalkit.rerank.colbert import require_pylate

    if importlib.util.find_spec("pylate") is not None:
        monkeypatch.setitem(sys.modules, "pylate", None)
    with pytest.raises(ModelError, match=r"pip install 'evalkit\[colbert\]'"):
        require_pylate()


def test_a_folder_that_is_not_a_hub_repository_says_so(tmp_path):
    from evalkit.config.schema import DatasetConfig
    from evalkit.data.sources import load_dataset
    from evalkit.errors import DataError

    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "notes.txt").write_text("not a dataset\n")
    config = DatasetConfig(name="x", source="hub", hub_id=str(tmp_path / "repo"))
    with pytest.raises(DataError, match="cannot load config 'corpus'"):
        load_dataset(config, tmp_path / "cache")


@pytest.mark.parametrize("damage", ["no text column", "front matter not YAML"])
def test_a_damaged_hub_folder_is_one_line_and_leaves_nothing_half_converted(tmp_path, damage):
    import json
    import shutil

    from evalkit.config.schema import DatasetConfig
    from evalkit.data.sources import load_dataset
    from evalkit.errors import DataError
    from tests.conftest import TOY

    repo = tmp_path / "repo"
    shutil.copytree(TOY.parent / "hub_toy", repo)
    if damage == "no text column":
        rows = [json.loads(line) for line in (repo / "corpus.jsonl").read_text().splitlines()]
        (repo / "corpus.jsonl").write_text(
            "".join(
                json.dumps({"_id": r["_id"], "title": r.get("title", ""), "body": r["text"]}) + "\n"
                for r in rows
            )
        )
        expected = r"corpus of '.*' has no 'text' column \(found \['_id', 'title', 'body'\]\)"
    else:
        readme = (repo / "README.md").read_text()
        (repo / "README.md").write_text(
            readme.replace("- config_name: queries\n", "- config_name: queries\n  x: [\n", 1)
        )
        expected = "front matter that is not valid YAML"
    config = DatasetConfig(name="toy", source="hub", hub_id=str(repo))
    with pytest.raises(DataError, match=expected):
        load_dataset(config, tmp_path / "cache")
    converted = list((tmp_path / "cache" / "datasets" / "hub").glob("*"))
    assert all(p.name.endswith(".lock") for p in converted), converted  # no half folder


def test_a_users_folder_is_never_taken_as_the_cache(tmp_path):
    """cache.dir naming a folder of the user's: refused, nothing written into it, and
    evalkit-cache clear refuses it too (no marker) -- the user's files survive."""
    from evalkit.cache_root import MARKER, clear_cache, ensure_cache_root
    from evalkit.errors import ConfigError, DataError

    mine = tmp_path / "my-data"
    (mine / "datasets").mkdir(parents=True)
    (mine / "datasets" / "corpus.jsonl").write_text('{"_id": "d1", "text": "mine"}\n')
    (mine / "runs").mkdir()
    (mine / "runs" / "es.trec").write_text("1 Q0 d1 1 1.0 es\n")
    with pytest.raises(ConfigError, match=r"holding 2 entries that evalkit did not create"):
        ensure_cache_root(mine)
    assert not (mine / MARKER).exists()
    with pytest.raises(DataError, match="is not an evalkit cache"):
        clear_cache(mine)
    assert (mine / "datasets" / "corpus.jsonl").read_text().startswith('{"_id"')
    assert (mine / "runs" / "es.trec").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (ensure_cache_root(empty) / MARKER).is_file()  # an empty folder is fine
    assert (ensure_cache_root(tmp_path / "new" / "cache") / MARKER).is_file()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the cache folder"):
        ensure_cache_root(tmp_path / "a-file" / "cache")  # cache.dir under a regular file


def test_clear_deletes_only_what_the_manifest_lists(tmp_path, capsys):
    """The data-loss case of #21: a folder of the user's that an older evalkit marked (the
    marker is there, no manifest). clear keeps the user's corpus and run file and names them;
    in a real cache, what evalkit recorded goes and a user's folder beside it stays; an edited
    manifest cannot point clear outside the cache or through a symlink."""
    from evalkit.cache import cached_file
    from evalkit.cache_root import ENTRIES, MARKER, cache_sizes, ensure_cache_root
    from evalkit.cli import cache_main

    legacy = tmp_path / "my-data"
    (legacy / "datasets").mkdir(parents=True)
    (legacy / "datasets" / "corpus.jsonl").write_text('{"_id": "d1", "text": "mine"}\n')
    (legacy / "runs").mkdir()
    (legacy / "runs" / "es.trec").write_text("1 Q0 d1 1 1.0 es\n")
    (legacy / MARKER).write_text("an older evalkit wrote this\n")
    cache_main(["clear", "--dir", str(legacy)])
    out = capsys.readouterr().out
    assert "(0 bytes)" in out and "kept 2 entries evalkit did not make" in out, out
    assert "datasets/corpus.jsonl" in out and "runs/es.trec" in out
    assert (legacy / "datasets" / "corpus.jsonl").is_file()
    assert (legacy / "runs" / "es.trec").is_file()

    root = ensure_cache_root(tmp_path / "cache")
    made = cached_file(root / "runs" / "abc.parquet", lambda p: p.write_bytes(b"x" * 100), Path)
    (root / "runs" / "mine.trec").write_text("kept\n")  # the user's file in evalkit's folder
    (root / "datasets" / "mine").mkdir(parents=True)
    (root / "datasets" / "mine" / "corpus.jsonl").write_text("kept\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("kept\n")
    (root / "link").symlink_to(outside, target_is_directory=True)
    with (root / ENTRIES).open("a") as out_file:  # hostile edits to the manifest
        out_file.write(f"../outside/precious.txt\n{outside / 'precious.txt'}\n")
        out_file.write(f"link/precious.txt\n{ENTRIES}\n{MARKER}\n")
    with (root / ENTRIES).open("ab") as out_file:
        out_file.write(b"\xff\xfe a torn line\n")  # skipped alone, not the whole manifest
    sizes = cache_sizes(root)
    assert sizes["runs"] == 100 + len(made.with_name("abc.parquet.xxh3").read_bytes())
    assert sizes["not evalkit's"] > 0
    cache_main(["clear", "--dir", str(root)])
    out = capsys.readouterr().out
    assert not made.exists() and not made.with_name("abc.parquet.xxh3").exists()
    assert (root / "runs" / "mine.trec").read_text() == "kept\n"
    assert (root / "datasets" / "mine" / "corpus.jsonl").read_text() == "kept\n"
    assert (outside / "precious.txt").read_text() == "kept\n"
    assert (root / MARKER).is_file() and (root / ENTRIES).read_text() == ""
    assert "runs/mine.trec" in out and "datasets/mine" in out and "link" in out, out


def test_an_input_edited_in_place_is_recomputed_not_served(tmp_path, caplog):
    """The resume key covers the inputs besides config and data: a run file rewritten in
    place is recomputed (it used to be skipped, serving the old numbers)."""
    from evalkit.runner import run_experiment
    from tests.conftest import CRANFIELD, compose

    run = tmp_path / "es.trec"
    run.write_text("1 Q0 184 1 2.0 es\n1 Q0 29 2 1.0 es\n")  # two of query 1's relevant docs
    overrides = [
        "dataset=local",
        f"dataset.path={CRANFIELD}",
        "dataset.max_queries=1",
        f"cache.dir={tmp_path / 'cache'}",
        "retriever=run_file",
        f"retriever.path={run}",
        "reranker=none",
        "eval.metrics=[P@2]",
        "latency.enabled=false",
        "show_progress=false",
    ]
    first = run_experiment(compose(overrides), tmp_path / "out").metrics["first_stage"]["P@2"]
    run.write_text("1 Q0 1 1 2.0 es\n1 Q0 2 2 1.0 es\n")  # edited in place: other documents
    with caplog.at_level("WARNING"):
        again = run_experiment(compose(overrides), tmp_path / "out").metrics["first_stage"]
    assert "inputs (retriever.path changed): recomputing" in caplog.text
    assert again["P@2"] != first


def test_a_local_models_fingerprint_covers_its_module_configs(tmp_path):
    from evalkit.models.loading import build_random_model, fingerprint

    shrink = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2}
    model = build_random_model(
        "sentence-transformers/all-MiniLM-L6-v2", "bi_encoder", tmp_path, shrink=shrink
    )
    before = fingerprint(str(model))
    (model / "README.md").write_text("notes")  # documentation: the same model
    assert fingerprint(str(model)) == before
    pooling = next(model.rglob("1_Pooling/config.json"))
    pooling.write_text(
        pooling.read_text().replace(
            '"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false'
        )
    )
    assert fingerprint(str(model)) != before  # mean -> no mean pooling: new scores, new key


def test_remote_code_needs_confirming_on_the_retriever_too():
    from evalkit.config import validate
    from evalkit.errors import ConfigError
    from tests.conftest import compose

    asked = ["retriever=minilm", "retriever.model=/models/x", "retriever.trust_remote_code=true"]
    with pytest.raises(ConfigError, match=r"retriever\.allow_remote_code=true"):
        validate(compose(asked))
    assert validate(compose([*asked, "retriever.allow_remote_code=true"])).retriever.model


@pytest.mark.parametrize("damage", ["not a database", "malformed pages"])
def test_a_damaged_pair_cache_is_set_aside_and_rebuilt(tmp_path, damage, caplog):
    from evalkit.cache import PairScoreCache, pair_key

    path = tmp_path / "pair_scores.sqlite"
    cache = PairScoreCache(path)
    cache.put_many("m", [(pair_key(f"q{i}", "d"), float(i)) for i in range(2000)])
    cache.close()
    raw = bytearray(path.read_bytes())
    if damage == "not a database":
        raw[:100] = b"\x07" * 100
    else:
        raw[4096 * 3 : 4096 * 6] = b"\xff" * (4096 * 3)  # b-tree pages overwritten
    path.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        again = PairScoreCache(path)
        found = again.get_many("m", [pair_key(f"q{i}", "d") for i in range(2000)])
        again.put_many("m", [(pair_key("q1", "d"), 1.0)])
    assert len(found) < 2000  # what was lost is recomputed, not served
    assert again.get_many("m", [pair_key("q1", "d")]) == {pair_key("q1", "d"): 1.0}
    assert "is damaged" in caplog.text
    assert list(tmp_path.glob("pair_scores.sqlite.damaged-*"))  # set aside, not deleted


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["report", "RESULTS", "--out", "FILE"], "cannot use"),
        (["report", "RESULTS", "--out", "FILE/report"], "a part of the path is a file"),
        (["decide", "RESULTS", "--p95-ms", "100", "--out", "RESULTS"], "it is a folder"),
        (["report", "RESULTS", "--bootstrap", "1000000000"], "from 100 to 100,000"),
    ],
)
@pytest.mark.slow  # the CLI in a subprocess, four times
def test_bad_output_paths_and_absurd_values_are_user_errors(tmp_path, command, message):
    """Exit 2 and one line, not an internal error (nothing half-written either)."""
    from tests.fakeruns import make_run
    from tests.test_e2e import evalkit_cli

    make_run(tmp_path / "results", "a", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    (tmp_path / "file").write_text("mine")
    args = [
        a.replace("RESULTS", str(tmp_path / "results")).replace("FILE", str(tmp_path / "file"))
        for a in command
    ]
    done = evalkit_cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "internal error" not in done.stderr
    assert (tmp_path / "file").read_text() == "mine"


def test_a_report_that_runs_out_of_space_leaves_the_old_one_whole(tmp_path, monkeypatch, capsys):
    """ENOSPC while report.md is written (after the tables and plots): exit 2 in one line,
    the report folder still holds the previous report, whole, and no scratch folder."""
    import errno

    import evalkit.analysis.render as render
    from evalkit.cli import report_main
    from tests.fakeruns import make_run

    make_run(tmp_path / "results", "a", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    make_run(tmp_path / "results", "b", [0.3, 0.2, 0.5], [0.2, 0.1, 0.4])
    out = tmp_path / "report"
    report_main([str(tmp_path / "results"), "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"report.html", "report.md", "report.csv"} <= set(before)
    make_run(tmp_path / "results", "c", [0.9, 0.9, 0.9], [0.2, 0.1, 0.4])  # a new report differs
    real = render.write_text

    def full(path, text):
        if path.name == "report.md":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(render, "write_text", full)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path / "results"), "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "No space left" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results"]


def _write_set(out: str, tag: str) -> None:
    """A writer of a.txt .. e.txt whose renames are slow (a busy disk) and start together
    with the other writer's where nothing keeps them apart: at its first rename each says
    it is ready and waits (2 s at most) for the other."""
    import os
    import time

    from evalkit.io import files_moved_into

    real = os.replace
    meeting = Path(out).parent
    # A's first rename is late and the rest quick, B's the other way round: unserialised,
    # a.txt ends up A's and the others B's
    pauses = iter([0.1, 0.005, 0.005, 0.005, 0.005] if tag == "A" else [0.01, 0.2, 0.2, 0.2, 0.2])

    def slow(source, target):
        if not (meeting / f"ready-{tag}").exists():
            (meeting / f"ready-{tag}").touch()
            deadline = time.monotonic() + 2
            while len(list(meeting.glob("ready-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(next(pauses, 0))  # then the list of names, unhurried
        real(source, target)

    os.replace = slow
    with files_moved_into(Path(out)) as scratch:
        for name in "abcde":
            (scratch / f"{name}.txt").write_text(tag)


def test_a_newer_set_removes_what_the_older_wrote_and_nothing_else(tmp_path):
    """A report without a selective section after one with it: the old selective.csv (and a
    folder of old plots) go; a file the user put there stays; an edited list of names
    cannot reach outside the folder."""
    from evalkit.io import files_moved_into

    out = tmp_path / "report"
    with files_moved_into(out) as scratch:
        for name in ("report.md", "selective.csv"):
            (scratch / name).write_text("old")
        (scratch / "plots").mkdir()
        (scratch / "plots" / "p.svg").write_text("old")
    (out / "my-notes.txt").write_text("mine")
    with files_moved_into(out) as scratch:
        (scratch / "report.md").write_text("new")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "my-notes.txt",
        "report.md",
    ]
    assert (out / "report.md").read_text() == "new"
    (tmp_path / "outside.txt").write_text("keep")
    (out / ".evalkit-files").write_text("../outside.txt\nmy-notes.txt/..\n.writing.lock\n")
    with files_moved_into(out) as scratch:
        (scratch / "report.md").write_text("newer")
    assert (tmp_path / "outside.txt").read_text() == "keep" and (out / "my-notes.txt").exists()


@pytest.mark.slow  # an end-to-end run in a subprocess (the fast tier stays under 3 min)
def test_two_writers_of_one_report_folder_leave_one_whole_set(tmp_path):
    """Two reports into one --out at once: the renames are serialised, so the folder holds
    one writer's files, never a mix; a killed writer's scratch folder is removed later."""
    import multiprocessing

    from evalkit.io import files_moved_into

    out = tmp_path / "report"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_set, args=(str(out), t)) for t in "AB"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    tags = {(out / f"{name}.txt").read_text() for name in "abcde"}
    assert tags in ({"A"}, {"B"}), tags
    dead = tmp_path / ".report.writing-999999999"  # no such process
    (dead / "half").mkdir(parents=True)
    with files_moved_into(out) as scratch:
        (scratch / "a.txt").write_text("C")
    assert not dead.exists() and (out / "a.txt").read_text() == "C"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready-A", "ready-B", "report"]
