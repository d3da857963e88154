"""Datasets by name: a Hub-layout folder through ``datasets``, the md5-checked zip as the
fallback when the Hub is down, any ir_datasets id, and MTEB ``top_ranked`` candidate lists
as the first stage -- each ending as the same validated shape."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pandas as pd
import pytest

from evalkit.config.schema import DatasetConfig
from evalkit.data.beir import load_beir_folder
from evalkit.data.sources import load_dataset
from evalkit.errors import ConfigError, NetworkError
from evalkit.runner import run_experiment
from evalkit.trec import read_trec_run
from tests.conftest import TOY, compose
from tests.test_e2e import evalkit_cli, evalkit_run

HUB_TOY = TOY.parent / "hub_toy"
PLUGIN = ["reranker=python", "reranker.target=tests.plugin_reranker:make"]


def same_content(left, right) -> None:
    for part in ("corpus", "queries", "qrels"):
        a = getattr(left, part).sort_values(list(getattr(left, part).columns[:2]))
        b = getattr(right, part).sort_values(list(getattr(right, part).columns[:2]))
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_a_hub_layout_folder_loads_through_datasets_as_the_same_collection(tmp_path):
    config = DatasetConfig(name="hub", source="hub", hub_id=str(HUB_TOY))
    loaded = load_dataset(config, tmp_path)
    same_content(loaded, load_beir_folder(TOY))
    converted = [p for p in (tmp_path / "datasets" / "hub").glob("local-hub_toy-*") if p.is_dir()]
    assert len(converted) == 1 and (converted[0] / ".complete").is_file()
    assert (converted[0] / "top_ranked" / "test.trec").read_text().splitlines()[0] == (
        "q1 Q0 d3 1 4 top_ranked"
    )


def test_without_the_hub_the_checksummed_zip_is_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from evalkit.models import hub

    hub.hub_reachable.cache_clear()
    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in TOY.rglob("*"):
            bundle.write(path, f"toy/{path.relative_to(TOY)}")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    config = DatasetConfig(
        name="toy", source="hub", hub_id="mteb/toy", revision="0" * 40, url=archive.as_uri()
    )
    with pytest.raises(NetworkError, match="Hub is not reachable for dataset 'mteb/toy'"):
        load_dataset(DatasetConfig(name="toy", source="hub", hub_id="mteb/toy"), tmp_path)
    config.md5 = md5
    same_content(load_dataset(config, tmp_path), load_beir_folder(TOY))
    hub.hub_reachable.cache_clear()


def register_toy_in_ir_datasets(folder) -> str:
    """The toy collection as an ir_datasets dataset (local files, nothing downloaded)."""
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    name = "evalkit-test/toy"
    if name in ir_datasets.registry:
        return name
    folder.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(line) for line in (TOY / "corpus.jsonl").open()]
    # ir_datasets' TSV documents have no title: title and text joined, as BEIR joins them
    text = {d["_id"]: f"{d.get('title') or ''} {d['text']}".strip() for d in docs}
    (folder / "docs.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in text.items()))
    queries = [json.loads(line) for line in (TOY / "queries.jsonl").open()]
    (folder / "queries.tsv").write_text("".join(f"{q['_id']}\t{q['text']}\n" for q in queries))
    rows = [line.split() for line in (TOY / "qrels" / "test.tsv").open()][1:]
    (folder / "qrels").write_text("".join(f"{q} 0 {d} {s}\n" for q, d, s in rows))
    ir_datasets.registry.register(
        name,
        Dataset(
            TsvDocs(LocalDownload(folder / "docs.tsv")),
            TsvQueries(LocalDownload(folder / "queries.tsv")),
            TrecQrels(LocalDownload(folder / "qrels"), {0: "no", 1: "yes", 2: "very"}),
        ),
    )
    return name


def common(tmp_path, *extra):
    return [
        f"cache.dir={tmp_path / 'cache'}",
        "show_progress=false",
        "latency.max_queries=4",
        "latency.warmup=0",
        "pipeline.depth=3",
        *extra,
    ]


def test_any_ir_datasets_id_gives_the_numbers_of_the_same_files(tmp_path):
    name = register_toy_in_ir_datasets(tmp_path / "irds-files")
    irds = run_experiment(
        compose(common(tmp_path, "dataset=irds", f"dataset.irds_id={name}", *PLUGIN)),
        tmp_path / "irds",
    )
    local = run_experiment(
        compose(common(tmp_path, "dataset=local", f"dataset.path={TOY}", *PLUGIN)),
        tmp_path / "local",
    )
    assert irds.dataset == "evalkit-test_toy"
    assert irds.metrics["first_stage"] == local.metrics["first_stage"]
    assert irds.metrics["reranked"] == local.metrics["reranked"]


def test_unknown_ir_datasets_id_is_one_line(tmp_path):
    config = DatasetConfig(name="irds", source="ir_datasets", irds_id="no-such/thing")
    with pytest.raises(ConfigError, match="ir_datasets has no dataset 'no-such/thing'"):
        load_dataset(config, tmp_path)


@pytest.mark.slow  # an end-to-end evalkit-run in a subprocess
def test_mteb_candidate_lists_are_the_first_stage_end_to_end(tmp_path):
    hub = ["dataset=hub", f"dataset.hub_id={HUB_TOY}", "dataset.name=hub_toy"]
    evalkit_run(
        *common(tmp_path, *hub, "retriever=top_ranked", "retriever.p95_ms=4", *PLUGIN),
        f"hydra.run.dir={tmp_path / 'results' / 'top_ranked'}",
    )
    folder = tmp_path / "results" / "top_ranked"
    first = read_trec_run(folder / "run.first_stage.trec")
    given = [json.loads(line) for line in (HUB_TOY / "top_ranked" / "test.jsonl").open()]
    for row in given:  # the candidates, in the dataset's own order
        ranked = first[first.query_id == row["query-id"]].sort_values("score", ascending=False)
        assert ranked.doc_id.tolist() == row["corpus-ids"]

    # the same candidates as a TREC run file through retriever=run_file: the same numbers
    run_file = tmp_path / "candidates.trec"
    run_file.write_text(
        "".join(
            f"{row['query-id']} Q0 {doc} {rank} {len(row['corpus-ids']) - rank} x\n"
            for row in given
            for rank, doc in enumerate(row["corpus-ids"], start=1)
        )
    )
    evalkit_run(
        *common(tmp_path, *hub, "retriever=run_file", f"retriever.path={run_file}", *PLUGIN),
        f"hydra.run.dir={tmp_path / 'results' / 'run_file'}",
    )
    a = json.loads((folder / "metrics.json").read_text())
    b = json.loads((tmp_path / "results" / "run_file" / "metrics.json").read_text())
    assert a["first_stage"] == b["first_stage"] and a["reranked"] == b["reranked"]

    decide = evalkit_cli("decide", str(tmp_path / "results" / "top_ranked"), "--p95-ms", "10000")
    assert decide.returncode == 0, decide.stderr
    assert "top_ranked" in decide.stdout


def test_top_ranked_without_candidate_lists_says_what_to_do(tmp_path):
    result = evalkit_run(
        *common(tmp_path, "dataset=local", f"dataset.path={TOY}", "retriever=top_ranked"),
        f"hydra.run.dir={tmp_path / 'out'}",
        check=False,
    )
    assert result.returncode != 0
    assert "has no candidate lists for split 'test'" in result.stderr
    assert "retriever=bm25" in result.stderr
