"""Runs from other tools are read as trec_eval reads them, or refused with file:line; a
measure that cannot be computed exactly is refused before anything runs."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.errors import ConfigError, DataError
from evalkit.external import evaluate_runs
from evalkit.measures import check_computable, parse_measures
from evalkit.trec import read_trec_run

QRELS = "1 0 a 1\n1 0 b 0\n1 0 c 2\n"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    "content",
    [
        "1 Q0 c 1 3 x\n1 Q0 a 2 2 x more junk at end\n",  # trec_eval's results.trunc
        "# written by engine X\n1 Q0 c 1 3 x\n# --- query 1 follows ---\n1 Q0 a 2 2 x\n",
        "# 1 Q0 FAKE 1 9.9\n1 Q0 c 1 3 x\n\n1 Q0 a 2 2 x\n",  # a comment shaped like data
    ],
)
def test_runs_trec_eval_reads_are_read(tmp_path, content):
    run = read_trec_run(write(tmp_path / "run.trec", content))
    assert run.values.tolist() == [["1", "c", 3.0], ["1", "a", 2.0]]


def test_a_gzipped_run_is_read(tmp_path):
    path = write(tmp_path / "run.trec.gz", gzip.compress(b"1 Q0 c 1 3 x\n1 Q0 a 2 2 x\n"))
    [result] = evaluate_runs([path], write(tmp_path / "q", QRELS), ["P@2", "NumRet"]).values()
    assert result.identity.name() == "run"  # named by the file, .trec.gz dropped
    assert result.metrics["first_stage"] == {"P@2": 1.0, "NumRet": 2.0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"1 Q0 a 1 3 x\n1 Q0 caf\xe9 2 2 x\n", r"not UTF-8.*run.trec:2.*iconv -f latin1"),
        (b"1 Q0 a 1 nan x\n", r"score 'nan' is not a finite number.*run.trec:1"),
        (b"1 Q0 a 1 3 x\n1 Q0 b 2 -inf x\n", r"score '-inf' is not a finite number.*run.trec:2"),
        (b"1 Q0 a 1 3\n", r"expected 6 fields.*found 5.*run.trec:1"),
        (b"1 Q0 a 1 3 x\n1 Q0 a 2 2 x\n", r"lists document 'a' twice for query '1'"),
    ],
)
def test_bad_runs_are_one_line_with_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "run.trec", content)
    with pytest.raises(DataError, match=message):
        evaluate_runs([path], write(tmp_path / "q", QRELS), ["P@1"])


def test_evalkit_eval_errors_are_one_line_and_exit_2(tmp_path):
    path = write(tmp_path / "run.trec", b"1 Q0 caf\xe9 1 3 x\n")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from evalkit.cli import eval_main; eval_main()",
            str(path),
            "--qrels",
            str(write(tmp_path / "q", QRELS)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"{path}:1" in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("measure", "qrels", "message"),
    [
        ("RBP", None, r"measure RBP cannot be computed here: Unsupported measures"),
        ("SDCG@10", None, r"SDCG@10 cannot be computed here: max_rel must be given"),
        ("ERR@10", "q1 0 a 1\n", r"gdeval.*integer query ids.*\['q1'\]"),
        ("nDCG(dcg='exp-log2')@10", "1 0 a 5\n", r"gdeval.*grades 0-4.*a grade of 5"),
    ],
)
def test_measures_that_would_crash_are_refused_up_front(tmp_path, measure, qrels, message):
    from evalkit.trec import read_qrels

    judgments = read_qrels(write(tmp_path / "q", qrels)) if qrels else None
    with pytest.raises(ConfigError, match=message):
        check_computable(parse_measures([measure]), judgments)


def test_a_bad_measure_in_a_run_config_is_refused_before_anything_runs():
    from evalkit.config import validate
    from tests.conftest import compose

    with pytest.raises(ConfigError, match="measure RBP cannot be computed here"):
        validate(compose(["dataset=cranfield", "eval.metrics=[nDCG@10,RBP]"]))
    with pytest.raises(ConfigError, match=r"eval\.metrics is empty"):
        validate(compose(["dataset=cranfield", "eval.metrics=[]"]))


def test_trec_eval_measure_names_are_read():
    assert [str(m) for m in parse_measures(["P_10", "ndcg_cut_10", "map", "recip_rank"])] == [
        "P@10",
        "nDCG@10",
        "AP",
        "RR",
    ]


def test_a_deep_run_file_is_kept_whole_unless_first_stage_k_is_set(tmp_path, caplog):
    from evalkit.runner import run_experiment
    from tests.conftest import CRANFIELD, compose

    lines = "".join(f"1 Q0 {d} {d} {2000 - d} x\n" for d in range(1, 1401))  # 1,400 deep
    run = write(tmp_path / "deep.trec", lines)
    base = [
        "dataset=local",
        f"dataset.path={CRANFIELD}",
        "dataset.max_queries=1",
        f"cache.dir={tmp_path / 'c'}",
        "retriever=run_file",
        f"retriever.path={run}",
        "reranker=none",
        "eval.metrics=[NumRet]",
        "latency.enabled=false",
        "show_progress=false",
    ]
    whole = run_experiment(compose(base), tmp_path / "whole")
    assert whole.metrics["first_stage"]["NumRet"] == 1400  # trec_eval has no limit either
    with caplog.at_level("WARNING"):
        cut = run_experiment(compose([*base, "pipeline.first_stage_k=1000"]), tmp_path / "cut")
    assert cut.metrics["first_stage"]["NumRet"] == 1000
    assert cut.metrics["data_warnings"]["run_file_lines_cut_at_first_stage_k"] == 400
    assert "pipeline.first_stage_k=1000 cut 400 of the run's 1400 lines" in caplog.text
