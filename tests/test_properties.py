"""Property-based tests (hypothesis): whatever a user writes into a file, types into a
config or passes to report / decide, evalkit answers with a clear error or a correct
result — never a traceback, never a changed input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalkit.errors import EvalkitError

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ids = st.text(min_size=0, max_size=8)
texts = st.one_of(st.text(max_size=30), st.none(), st.integers(), st.lists(st.integers()))


def _write_folder(root: Path, corpus_lines, query_lines, qrels_text: str) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(query_lines) + "\n", encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(qrels_text, encoding="utf-8")
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


record = st.fixed_dictionaries({"_id": st.one_of(ids, st.integers(), st.none()), "text": texts})
raw_lines = st.one_of(record.map(json.dumps), st.text(max_size=20), st.just("[1, 2]"), st.just(""))


@SETTINGS
@given(
    corpus=st.lists(raw_lines, min_size=0, max_size=6),
    queries=st.lists(raw_lines, min_size=0, max_size=4),
    qrels=st.lists(
        st.tuples(ids, ids, st.one_of(st.integers(-2, 3).map(str), st.text(max_size=3))),
        max_size=6,
    ),
)
def test_beir_loader_gives_a_dataset_or_a_clear_error(tmp_path_factory, corpus, queries, qrels):
    from evalkit.data import load_beir_folder

    body = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels)
    root = _write_folder(tmp_path_factory.mktemp("beir"), corpus, queries, body)
    before = _snapshot(root)
    try:
        dataset = load_beir_folder(root)
    except EvalkitError as error:
        assert str(error)  # a message, never empty
    else:
        for frame, column in (
            (dataset.corpus, "doc_id"),
            (dataset.queries, "query_id"),
            (dataset.qrels, "query_id"),
            (dataset.qrels, "doc_id"),
        ):
            for value in frame[column]:
                assert value and not any(c.isspace() for c in value)
        assert set(dataset.queries.query_id) == set(dataset.qrels.query_id)
    assert _snapshot(root) == before


@SETTINGS
@given(lines=st.lists(st.text(max_size=40), max_size=8))
def test_trec_run_reader_gives_a_run_or_a_clear_error(tmp_path_factory, lines):
    from evalkit.trec import read_trec_run

    path = tmp_path_factory.mktemp("run") / "run.trec"
    path.write_text("\n".join(lines), encoding="utf-8")
    before = path.read_bytes()
    try:
        run = read_trec_run(path)
    except EvalkitError as error:
        assert "run.trec:" in str(error)
    else:
        assert list(run.columns) == ["query_id", "doc_id", "score"]
    assert path.read_bytes() == before


numbers = st.one_of(
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["abc", "", "1e400", "-0"]),
)
keys = st.sampled_from(
    [
        "pipeline.depth",
        "pipeline.first_stage_k",
        "latency.max_queries",
        "latency.warmup",
        "latency.concurrency",
        "latency.max_seconds",
        "latency.throughput_pairs",
        "reranker.batch_size",
        "reranker.max_length",
        "dataset.relevance_level",
        "dataset.max_queries",
        "retriever.k1",
        "retriever.b",
        "seed",
    ]
)


@pytest.fixture(scope="module")
def composed():
    from omegaconf import OmegaConf

    import evalkit

    return OmegaConf.to_container(evalkit.compose(["dataset=cranfield"]), resolve=False)


@SETTINGS
@given(key=keys, value=numbers)
def test_config_values_are_valid_or_refused_naming_the_key(composed, key, value):
    import copy

    from evalkit.config import validate

    data = copy.deepcopy(composed)
    data.pop("hydra", None)
    section, _, name = key.rpartition(".")
    (data[section] if section else data)[name] = value
    try:
        config = validate(data)
    except EvalkitError as error:
        assert name in str(error), str(error)
        return
    found = getattr(getattr(config, section) if section else config, name)
    if found is not None:
        assert math.isfinite(found) and found >= 0


@SETTINGS
@given(
    p95=numbers,
    qps=st.one_of(st.none(), numbers),
    alpha=numbers,
    min_gain=numbers,
)
def test_budget_is_valid_or_a_clear_error(p95, qps, alpha, min_gain):
    from evalkit.analysis.decision import Budget

    try:
        budget = Budget(p95_ms=p95, qps=qps, min_gain=min_gain, alpha=alpha)
    except EvalkitError as error:
        assert str(error).startswith("--")
    else:
        assert budget.p95_ms > 0 and 0 < budget.alpha < 1 and math.isfinite(budget.min_gain)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from tests.fakeruns import make_run

    root = tmp_path_factory.mktemp("results")
    make_run(root, "a", [0.1, 0.4, 0.3, 0.2], [0.3, 0.5, 0.3, 0.6])
    return root


@SETTINGS
@given(
    argv=st.lists(
        st.sampled_from(
            [
                "--p95-ms",
                "--qps",
                "--alpha",
                "--min-gain",
                "--metric",
                "--dataset",
                "nan",
                "-1",
                "0",
                "1e9",
                "inf",
                "P@10",
                "nDCG@0",
                "toy",
                "x",
            ]
        ),
        max_size=6,
    )
)
def test_decide_command_line_never_tracebacks(results, argv, capsys):
    from evalkit.cli import decide_main

    try:
        decide_main([str(results), *argv])
    except SystemExit as exit_info:
        assert exit_info.code in (0, 2), capsys.readouterr().err
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err


@settings(max_examples=300, deadline=None)
@given(grade=st.one_of(st.text(max_size=6), st.integers(-5, 100).map(str)))
def test_a_grade_is_read_exactly_or_refused_in_one_line(grade):
    """A qrels grade is an integer in ASCII digits, read as exactly that integer; anything
    else (``2.0``, ``1_0``, ``٢``, ``+1``, spaces inside) is refused, never coerced."""
    import re

    from evalkit.data.beir import _qrels_row
    from evalkit.errors import DataError

    spaces = " \t\r\n\v\f"  # around it: C's white space (not \x1f, not U+3000)
    ascii_integer = re.fullmatch(r"-?[0-9]+", grade.strip(spaces)) is not None
    try:
        _, _, value = _qrels_row(["q1", "d1", grade], "qrels/test.tsv:2")
    except DataError as error:
        assert not ascii_integer, grade
        assert "qrels/test.tsv:2" in str(error) and "\n" not in str(error)
    else:
        assert ascii_integer, grade
        assert value == int(grade.strip(spaces))


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.integers(-3, 10),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=3),
    )
)
def test_a_hub_grade_is_an_integer_or_refused_never_truncated(value):
    """Hub qrels scores: 2 and 2.0 are 2; 0.7 is refused (it was int()-truncated to 0)."""
    from evalkit.data.hub import exact_grade
    from evalkit.errors import DataError

    whole = (
        not isinstance(value, bool | str) and math.isfinite(value) and float(value) == int(value)
    )
    try:
        got = exact_grade(value, "org/repo", 7)
    except DataError as error:
        assert not whole and "row 7" in str(error)
    else:
        assert whole and got == int(value)
