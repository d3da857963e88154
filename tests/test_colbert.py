"""reranker=colbert through PyLate, and its cost-only variant, end to end.

PyLate pins sentence-transformers==5.3.0, so these tests run in an environment of their
own: a virtual environment on top of this one (torch and evalkit shared) with
sentence-transformers 5.3.0, transformers 5.3.0 and PyLate installed from the package index
(see the README). The model is the real all-MiniLM-L6-v2 (shipped by a PyPI package) turned
into a ColBERT by PyLate (token vectors through a projection it adds).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import TOY
from tests.test_e2e import evalkit_cli

pytestmark = pytest.mark.slow

# transformers[kernels]: newer transformers releases require ``kernels`` 0.19, which the side
# environment sees through the .pth line, and transformers 5.3.0 fails to import with it
# ("Either a revision or a version must be specified."); the extra installs the kernels
# release 5.3.0 was written for (>=0.10.2,<0.11) in the side environment, ahead of the outer one.
SIDE_PACKAGES = ["sentence-transformers==5.3.0", "transformers[kernels]==5.3.0"]
PYLATE = ["pylate==1.6.0", "ujson==5.12.0", "fastkmeans==0.5.0"]  # without fast-plaid (indexes)


@pytest.fixture(scope="session")
def colbert_python(tmp_path_factory) -> str:
    """A Python with PyLate importable (this one, or a side environment built once)."""
    if importlib.util.find_spec("pylate") is not None:
        return sys.executable
    if os.environ.get("EVALKIT_COLBERT_PYTHON"):  # an environment built before
        return os.environ["EVALKIT_COLBERT_PYTHON"]
    env = tmp_path_factory.mktemp("colbert-env")
    python = str(env / "bin" / "python")
    steps = [
        [sys.executable, "-m", "venv", "--system-site-packages", str(env)],
        [python, "-m", "pip", "install", "-q", *SIDE_PACKAGES],
        [python, "-m", "pip", "install", "-q", "--no-deps", *PYLATE],
    ]
    for step in steps[:1]:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    see_outer_environment(python)
    for step in steps[1:]:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    return python


def see_outer_environment(python: str) -> None:
    """``--system-site-packages`` shows the base interpreter's packages, not those of the
    virtual environment this test runs in (torch, evalkit): a ``.pth`` file in the side
    environment adds this one's site folders after its own, as the README's recipe does."""
    import site

    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({folder!r})" for folder in site.getsitepackages()]
    Path(purelib, "evalkit-outer.pth").write_text("\n".join(lines) + "\n")


def run_in(python: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=Path(__file__).parents[1],
    )


def test_scores_are_maxsim_of_the_token_vectors(colbert_python, minilm_path, tmp_path):
    done = run_in(
        colbert_python,
        f"""
        import json
        import numpy as np
        from evalkit.config import build_scorer, validate
        from tests.conftest import compose

        config = validate(compose([
            "reranker=colbert", "reranker.model={minilm_path}", "cache.dir={tmp_path}/cache",
        ]))
        scorer = build_scorer(config)
        pairs = [("wing flutter", "flutter of a swept wing"),
                 ("heat transfer", "heat transfer in a boundary layer"),
                 ("wing flutter", "boundary layer heat transfer at supersonic speed")]
        seen = []
        scores = scorer.score(pairs, on_done=lambda i, v: seen.extend(i))
        # MaxSim by hand from the model's own token vectors
        expected = []
        for query, document in pairs:
            q = scorer.model.encode([query], is_query=True)[0]
            d = scorer.model.encode([document], is_query=False)[0]
            expected.append(float((q @ d.T).max(axis=1).sum()))
        print(json.dumps({{"scores": scores.tolist(), "expected": expected, "seen": seen,
                          "fingerprint": scorer.fingerprint}}))
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scores"] == pytest.approx(result["expected"], rel=1e-5)
    assert sorted(result["seen"]) == [0, 1, 2]
    assert result["scores"][0] > result["scores"][2]  # the flutter passage beats heat transfer
    assert "colbert|" in result["fingerprint"]


def test_colbert_and_its_cost_only_variant_through_run_report_and_decide(
    colbert_python, minilm_path, tmp_path
):
    common = [
        "dataset=local",
        f"dataset.path={TOY}",
        f"cache.dir={tmp_path / 'cache'}",
        "show_progress=false",
        "latency.max_queries=4",
        "latency.warmup=1",
        "pipeline.depth=5",
    ]
    runs = {
        "colbert": ["reranker=colbert", f"reranker.model={minilm_path}"],
        "costonly": ["reranker=colbert_costonly"],
        "bm25": ["reranker=none"],
    }
    for folder, settings in runs.items():
        done = subprocess.run(
            [
                colbert_python,
                "-c",
                "from evalkit.cli import run_main; run_main()",
                *common,
                *settings,
                f"hydra.run.dir={tmp_path / 'results' / folder}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "results" / "colbert" / "metrics.json").read_text())
    assert metrics["identity"]["reranker"]["kind"] == "colbert"
    assert set(metrics["reranked"]) == set(metrics["first_stage"])
    costonly = json.loads((tmp_path / "results" / "costonly" / "metrics.json").read_text())
    assert costonly["quality_meaningful"] is False
    latency = json.loads((tmp_path / "results" / "costonly" / "latency.json").read_text())
    assert latency["online"]["total"]["p95_ms"] > 0
    assert latency["offline"]["rerank_pairs_per_second"] > 0

    report = evalkit_cli("report", str(tmp_path / "results"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "results" / "report" / "report.md").read_text()
    assert "bm25 → colbert@5 [model=model, weights=pretrained]" in text
    assert "bm25 → colbert@5 [model=colbertv2.0, weights=random]" in text  # latency table
    decide = evalkit_cli("decide", str(tmp_path / "results"), "--p95-ms", "100000")
    assert decide.returncode == 0, decide.stderr
    assert "colbert@5" in decide.stdout and "cost-only weights" in decide.stdout
