"""The bad-input catalogue at the CLI: one line naming what and where, exit 2, no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import CRANFIELD
from tests.test_e2e import evalkit_run

LOCAL = ["dataset=local", f"dataset.path={CRANFIELD}", "show_progress=false"]
CASES = {
    "missing dataset folder": (
        ["dataset=local", "dataset.path=/nonexistent/beir"],
        "dataset folder does not exist: /nonexistent/beir",
    ),
    "unknown split": ([*LOCAL, "dataset.split=dev"], "split 'dev' not found"),
    "unknown measure": ([*LOCAL, "eval.metrics=[nDGC@10]"], "unknown measure 'nDGC@10'"),
    "depth beyond first stage": (
        [*LOCAL, "pipeline.depth=2000"],
        "pipeline.depth=2000 must be between 1 and",
    ),
    "model path missing": (
        [*LOCAL, "reranker.model=/models/not-here"],
        "model path does not exist: /models/not-here",
    ),
    "hub model offline": (
        [*LOCAL, "reranker.model=some-org/not-downloaded-reranker"],
        "cannot load reranker 'some-org/not-downloaded-reranker'",
    ),
    "remote code not configured": (
        [*LOCAL, "reranker.trust_remote_code=true"],
        "trust_remote_code=true for 'cross-encoder/ms-marco",
    ),
    "local without path": (["dataset=local"], "dataset=local needs a folder"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(case, tmp_path):
    overrides, message = CASES[case]
    result = evalkit_run(
        *overrides, f"hydra.run.dir={tmp_path}/run", f"cache.dir={tmp_path}/c", check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("evalkit: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "complete.json").exists()


def test_misspelled_key_and_unknown_option_fail_before_running(tmp_path):
    for override, message in (
        ("reranker.max_lenght=64", "max_lenght"),
        ("reranker=colbert", "reranker/colbert"),
    ):
        result = evalkit_run(override, f"hydra.run.dir={tmp_path}/run", check=False)
        assert result.returncode != 0 and message in result.stderr
        assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(tmp_path):
    result = evalkit_run(
        "dataset=local",
        "dataset.path=/nonexistent",
        "verbose=true",
        f"hydra.run.dir={tmp_path}/run",
        check=False,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
