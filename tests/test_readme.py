"""The README is run: every code block says what it is, and the offline ones are executed.

Each block is preceded by ``<!-- readme: KIND -->``: ``run`` (executed here, outputs
compared where they are deterministic), ``output`` (what a run above prints), ``network``
(needs the model hub or a dataset host), ``placeholder`` (paths of the reader's own), or
``tested-by FILE`` (the same steps run by another test).
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KINDS = ("run", "output", "network", "placeholder", "tested-by")


@dataclass(frozen=True)
class Block:
    kind: str
    language: str
    text: str
    line: int


def blocks() -> list[Block]:
    found, lines = [], README.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = re.fullmatch(r"```(\w*)", lines[index])
        if opening:
            end = lines.index("```", index + 1)
            before = [line for line in lines[:index] if line.strip()]
            mark = re.fullmatch(r"<!-- readme: (.+?) -->", before[-1]) if before else None
            kind = mark.group(1) if mark else "unmarked"
            text = "\n".join(lines[index + 1 : end])
            found.append(Block(kind, opening.group(1), text, index + 1))
            index = end
        index += 1
    return found


def runnable(start: str) -> Block:
    [block] = [b for b in blocks() if b.kind == "run" and b.text.startswith(start)]
    return block


def test_every_code_block_says_whether_it_is_run():
    unmarked = [(b.line, b.kind) for b in blocks() if not b.kind.startswith(KINDS)]
    assert unmarked == []
    for block in blocks():
        if block.kind.startswith("tested-by"):
            assert (ROOT / block.kind.split()[1]).is_file()


def test_the_colbert_recipe_installs_what_its_test_installs():
    """The README's side-environment recipe is run by tests/test_colbert.py, with that file's
    pins: the two must name the same packages, or the recipe drifts untested."""
    from tests.test_colbert import PYLATE, SIDE_PACKAGES

    [block] = [b for b in blocks() if b.kind == "tested-by tests/test_colbert.py"]
    installs = [
        [word.strip("'") for word in line.split()[2:] if word != "--no-deps"]
        for line in block.text.splitlines()
        if line.startswith(".venv-colbert/bin/pip install")
    ]
    assert installs == [SIDE_PACKAGES, PYLATE]


def shell(command: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """A fresh folder and an empty home (so an empty evalkit cache), evalkit installed."""
    home = tmp_path_factory.mktemp("home")
    work = tmp_path_factory.mktemp("work")
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return work, env


def systems_and_means(text: str) -> dict[str, str]:
    """``fits/out/undet/cost SYSTEM  MEAN`` rows of a printed decision (latencies vary)."""
    rows = re.findall(
        r"^\s+(?:fits|out|undet|cost)\s+(.+?)\s{2,}(\d\.\d{4}|cost-only)", text, flags=re.M
    )
    return dict(rows)


@pytest.mark.slow
def test_the_first_command_then_the_python_api(newcomer):
    """The README's first command (its installs are CI's own first step), run in a fresh
    folder, then the Python block on what it wrote."""
    work, env = newcomer
    first = runnable("python -m pip install torch").text.splitlines()[0]
    steps = [s.strip() for s in first.split("&&") if not s.strip().startswith("python -m pip")]
    output = shell(" && ".join(steps), work, env)
    shown = next(b for b in blocks() if b.kind == "output").text
    # which systems there are and their quality are deterministic; fits/out and the verdict
    # rest on timings, which vary from run to run
    assert systems_and_means(output) == systems_and_means(shown)
    assert (work / "results/sweeps/quickstart/report/report.html").is_file()
    run_python_block(runnable(">>> import evalkit").text, work)
    run_python_block(runnable(">>> from evalkit.data.sources import builtin_path").text, work)


def run_python_block(text: str, cwd: Path) -> None:
    """Run a ``>>>`` block; compare the outputs that do not depend on timings."""
    examples = doctest.DocTestParser().get_examples(text)
    namespace: dict = {}
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        for example in examples:
            code = compile(example.source, "README.md", "single")
            import contextlib
            import io

            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(code, namespace)
            timed = any(word in example.source for word in ("decision", "headline", "to_latex"))
            if not timed:  # a decision, the headline's and the LaTeX table's p95 rest on timings
                assert buffer.getvalue().split() == example.want.split(), example.source
    finally:
        os.chdir(previous)


@pytest.mark.slow
def test_the_hub_layout_example_with_the_readme_plugin(newcomer):
    work, env = newcomer
    (work / "my_rerankers.py").write_text(runnable("# my_rerankers.py").text)
    example = runnable("$ evalkit-run dataset=hub").text
    commands = re.findall(r"^\$ (.+?(?:\\\n.+?)*)$", example, flags=re.M)
    env = {**env, "PYTHONPATH": str(work)}
    outputs = []
    for command in commands:
        command = command.replace("tests/data/hub_toy", str(ROOT / "tests/data/hub_toy"))
        outputs.append(shell(command.replace("\\\n", " "), work, env))
    shown_decision = example.split("$ evalkit-decide", 1)[1].splitlines()[1:]
    got = outputs[-1].splitlines()
    assert got[: len(shown_decision)] == shown_decision  # quality and given p95: deterministic
    shown_run = example.split("$ evalkit-decide", 1)[0].splitlines()[2:]
    assert shown_run[-1] == "..."  # the rest of the table: the README shows its first rows
    assert all(line in outputs[0].splitlines() for line in shown_run[:-1])


@pytest.mark.slow
def test_the_other_offline_commands(newcomer):
    work, env = newcomer
    starts = (
        "evalkit-run dataset=cranfield retriever=bm25",
        "evalkit-run dataset=cranfield reranker=biencoder_packaged pipeline.policy",
    )
    for start in starts:
        for line in runnable(start).text.splitlines():
            command = line.split("#")[0].strip()
            output = shell(command, work, env)
            if "--cfg job" in command:
                assert "reranker:" in output and "pipeline:" in output
            else:
                assert "results:" in output


def test_the_evalkit_eval_example_prints_what_the_readme_shows(newcomer):
    work, env = newcomer
    example = runnable("$ evalkit-eval").text
    command, shown = example.split("\n", 2)[:2], example.split("\n", 2)[2]
    line = " ".join(part.strip().rstrip("\\") for part in command)[2:]
    output = shell(line.replace("tests/data", str(ROOT / "tests/data")), work, env)
    assert output.strip() == shown.strip()
