"""BEIR loading, validation errors, and the download path (exercised with file:// URLs)."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import zipfile
from pathlib import Path

import pytest

from evalkit.data import load_beir_folder
from evalkit.data.download import download_beir, safe_name
from evalkit.errors import DataError, NetworkError


def write_beir(folder: Path, corpus=None, queries=None, qrels=None, split="test") -> Path:
    corpus = (
        corpus
        if corpus is not None
        else [
            {"_id": "d1", "title": "wind", "text": "wind tunnel"},
            {"_id": "d2", "title": "", "text": "heat transfer"},
        ]
    )
    queries = (
        queries
        if queries is not None
        else [{"_id": "q1", "text": "tunnel"}, {"_id": "q2", "text": "heat"}]
    )
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        if isinstance(rows, (bytes, str)):
            data = rows if isinstance(rows, bytes) else rows.encode()
            (folder / name).write_bytes(data)
        else:
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "qrels" / f"{split}.tsv").write_text(qrels)
    return folder


def test_cranfield_loads_with_its_documented_counts(cranfield):
    assert len(cranfield.corpus) == 1400
    assert len(cranfield.queries) == 225
    assert len(cranfield.qrels) == 1612
    assert cranfield.warnings == {"empty_documents": 2}
    assert sorted(cranfield.qrels.relevance.value_counts().to_dict().items()) == [
        (1, 363),
        (2, 734),
        (3, 387),
        (4, 128),
    ]


def test_max_queries_keeps_the_first_ids_numerically(cranfield_path):
    ds = load_beir_folder(cranfield_path, max_queries=3)
    assert sorted(ds.queries.query_id, key=int) == ["1", "2", "3"]
    assert set(ds.qrels.query_id) == {"1", "2", "3"}


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        ('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n', r"malformed JSON.*corpus.jsonl:2"),
        ('{"title": "no id", "text": "a"}\n', r"without '_id'.*corpus.jsonl:1"),
        (
            '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n',
            r"duplicate document id 'd1' \(first at line 1\).*corpus.jsonl:2",
        ),
        (b'{"_id": "d1", "text": "caf\xe9"}\n', r"not UTF-8.*corpus.jsonl:1.*iconv"),
        ("[1, 2]\n", r"expected a JSON object, found list"),
        ("", r"the corpus is empty"),
    ],
)
def test_malformed_corpus_errors_name_file_and_line(tmp_path, corpus, message):
    folder = write_beir(
        tmp_path / "ds", corpus=corpus, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n"
    )
    with pytest.raises(DataError, match=message):
        load_beir_folder(folder)


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\n", r"has 2 column\(s\), expected 3.*test.tsv:2"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"must be an integer, found 'high'.*:2"),
        ("query-id\tdoc\tscore\nq1\td1\t1\n", r"header must be"),
        ("query-id\tcorpus-id\tscore\n", r"no judgments"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t0\n", r"twice"),
    ],
)
def test_malformed_qrels_errors(tmp_path, qrels, message):
    with pytest.raises(DataError, match=message):
        load_beir_folder(write_beir(tmp_path / "ds", qrels=qrels))


@pytest.mark.parametrize("grade", ["2.0", "1_0", "\u0662", "+1", "1e0", ""])
def test_grades_are_integers_in_ascii_digits(tmp_path, grade):
    """Python's int() reads '1_0' as 10 and Arabic-Indic '٢' as 2: evalkit refuses them."""
    qrels = f"query-id\tcorpus-id\tscore\nq1\td1\t{grade}\n"
    with pytest.raises(DataError, match=r"relevance must be an integer.*ds/qrels/test.tsv:2"):
        load_beir_folder(write_beir(tmp_path / "ds", qrels=qrels))


def test_negative_and_zero_grades_are_read(tmp_path):
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t-1\nq1\td2\t0\nq2\td1\t3\n"
    ds = load_beir_folder(write_beir(tmp_path / "ds", qrels=qrels))
    assert ds.qrels.relevance.tolist() == [-1, 0, 3]


def test_missing_split_lists_the_available_ones(tmp_path):
    folder = write_beir(tmp_path / "ds", split="dev")
    with pytest.raises(DataError, match=r"split 'test' not found.*\['dev'\]"):
        load_beir_folder(folder, split="test")


def test_qrels_naming_unknown_queries_and_documents(tmp_path):
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\nq2\td404\t1\n"
    folder = write_beir(tmp_path / "ds", qrels=qrels)
    ds = load_beir_folder(folder)  # default: counted, unknown query dropped, unknown doc kept
    assert ds.warnings == {"qrels_unknown_queries": 1, "qrels_unknown_documents": 1}
    assert sorted(ds.qrels.query_id) == ["q1", "q2"]
    with pytest.raises(DataError, match=r"1 qrels lines name queries missing.*\['q9'\]"):
        load_beir_folder(folder, on_invalid="error")


def test_unjudged_and_empty_queries_are_reported(tmp_path):
    queries = [
        {"_id": "q1", "text": "tunnel"},
        {"_id": "q2", "text": "  "},
        {"_id": "q3", "text": "never judged"},
    ]
    folder = write_beir(tmp_path / "ds", queries=queries)
    ds = load_beir_folder(folder)
    assert ds.warnings == {"queries_without_judgments_excluded": 1, "empty_queries": 1}
    assert sorted(ds.queries.query_id) == ["q1", "q2"]


def make_zip(tmp_path: Path, members: dict[str, str]) -> tuple[str, str]:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, text in members.items():
            bundle.writestr(name, text)
    return archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest()


def beir_members(name: str) -> dict[str, str]:
    return {
        f"{name}/corpus.jsonl": '{"_id": "d1", "title": "", "text": "wind tunnel"}\n',
        f"{name}/queries.jsonl": '{"_id": "q1", "text": "tunnel"}\n',
        f"{name}/qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
    }


def test_download_verifies_checksum_extracts_once_and_loads(tmp_path):
    url, md5 = make_zip(tmp_path, beir_members("toy"))
    folder = download_beir("toy", url, md5, tmp_path / "cache")
    assert load_beir_folder(folder).corpus.doc_id.tolist() == ["d1"]
    (tmp_path / "bundle.zip").unlink()  # a second call must not download again
    assert download_beir("toy", url, md5, tmp_path / "cache") == folder


def test_download_refuses_a_wrong_checksum_and_leaves_nothing(tmp_path):
    url, _ = make_zip(tmp_path, beir_members("toy"))
    with pytest.raises(DataError, match=r"checksum mismatch"):
        download_beir("toy", url, "0" * 32, tmp_path / "cache")
    assert not (tmp_path / "cache" / "datasets" / "beir" / "toy").exists()


def test_zip_slip_is_refused(tmp_path):
    members = beir_members("toy") | {"../../escaped.txt": "gotcha"}
    url, md5 = make_zip(tmp_path, members)
    with pytest.raises(DataError, match=r"zip-slip"):
        download_beir("toy", url, md5, tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists()


def test_no_network_says_so_and_shows_the_local_route(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(NetworkError, match=r"cannot download.*dataset=local dataset.path=DIR"):
        download_beir("scifact", "https://example.invalid/scifact.zip", None, tmp_path)


@pytest.mark.parametrize("name", ["../etc", "a/b", "/abs", ".hidden", "x/../../y"])
def test_names_cannot_escape_the_cache(name):
    with pytest.raises(DataError, match=r"unsafe"):
        safe_name(name)


@pytest.mark.parametrize("grade", [0.7, 1.5, float("nan"), "2", True])
def test_hub_grades_are_never_truncated(grade):
    """A Hub table's float grade 0.7 used to become 0 through int(); it is refused, naming
    the row (2.0 and numpy integers are integers)."""
    import numpy as np

    from evalkit.data.hub import exact_grade

    with pytest.raises(DataError, match=r"row 3: grade .* is not an integer"):
        exact_grade(grade, "mteb/x", 3)
    assert exact_grade(2.0, "mteb/x", 1) == 2 and exact_grade(np.int64(3), "mteb/x", 1) == 3


def test_an_empty_queries_file_is_one_line(tmp_path):
    folder = write_beir(tmp_path / "ds")
    (folder / "queries.jsonl").write_text("")
    with pytest.raises(DataError, match=r"the queries file holds no queries.*queries\.jsonl"):
        load_beir_folder(folder)


def test_a_dataset_path_that_loops_or_is_a_file_is_one_line(tmp_path):
    """A symlink loop as dataset.path was an internal RuntimeError from Path.resolve()."""
    from evalkit.config.schema import DatasetConfig
    from evalkit.data.sources import load_dataset

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "a-file").write_text("x")
    cases = {"loop": "loops through symlinks", "loop/inner": "loops through symlinks"}
    cases |= {"a-file": "is a file, not a folder", "missing": "does not exist"}
    for name, words in cases.items():
        config = DatasetConfig(name="local", source="local", path=str(tmp_path / name))
        with pytest.raises(DataError, match=f"dataset folder {words}: .*{name}"):
            load_dataset(config, tmp_path / "cache")


def test_a_byte_order_mark_is_removed_from_every_reader(tmp_path, caplog):
    """Files from editors and Windows tools start with a UTF-8 BOM. It was read as part of
    the first id: a TREC run and qrels split query 1 in two (nDCG@10 0.6667, not 1.0), and
    a BEIR folder was refused with a puzzling error. Removed now, with a warning, in every
    reader; the scores equal those of the same files without it."""
    import shutil

    from evalkit.data import load_beir_folder
    from evalkit.external import evaluate_runs
    from tests.conftest import TOY

    bom = b"\xef\xbb\xbf"
    qrels = b"1 0 d1 1\r\n1 0 d2 0\r\n2 0 d3 1\r\n"
    run = b"1 Q0 d1 1 2.0 x\r\n1 Q0 d2 2 1.0 x\r\n2 Q0 d3 1 1.0 x\r\n"
    for name, data in (("q.txt", qrels), ("r.trec", run), ("bq.txt", bom + qrels)):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "br.trec").write_bytes(bom + run)
    with caplog.at_level("WARNING"):
        marked = evaluate_runs([tmp_path / "br.trec"], tmp_path / "bq.txt", ["nDCG@10", "NumQ"])
    plain = evaluate_runs([tmp_path / "r.trec"], tmp_path / "q.txt", ["nDCG@10", "NumQ"])
    assert marked["br"].metrics["first_stage"] == plain["r"].metrics["first_stage"]
    assert plain["r"].metrics["first_stage"] == {"nDCG@10": 1.0, "NumQ": 2.0}
    assert caplog.text.count("byte-order mark") == 2
    expected = load_beir_folder(TOY, "test")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        folder = tmp_path / name.replace("/", "_")
        shutil.copytree(TOY, folder)
        (folder / name).write_bytes(bom + (folder / name).read_bytes())
        found = load_beir_folder(folder, "test")
        assert found.qrels.equals(expected.qrels) and found.corpus.equals(expected.corpus)
        assert found.queries.equals(expected.queries)
