"""The Python API as the README shows it, the README's plugin, and adding a reranker kind."""

from __future__ import annotations

import re
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import CRANFIELD, compose

README = Path(__file__).resolve().parents[1] / "README.md"
QUICK = [
    "dataset=local",
    f"dataset.path={CRANFIELD}",
    "dataset.max_queries=3",
    "pipeline.depth=5",
    "latency.enabled=false",
    "latency.throughput_pairs=4",
    "show_progress=false",
]


def readme_plugin() -> str:
    """The README's ``my_rerankers.py`` block, as a user copies it."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [block] = [b for b in blocks if b.startswith("# my_rerankers.py")]
    return block


def cached_pairs(cache: Path) -> int:
    with sqlite3.connect(cache / "pair_scores.sqlite") as connection:
        return connection.execute("SELECT COUNT(*) FROM scores_v2").fetchone()[0]


def test_the_readme_plugin_runs_and_its_scores_are_cached(tmp_path, monkeypatch):
    """The README's plugin ignores on_done; the engine caches its scores all the same."""
    import evalkit

    (tmp_path / "my_rerankers.py").write_text(readme_plugin())
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = [*QUICK, f"cache.dir={tmp_path / 'cache'}", "reranker=python"]
    overrides.append("reranker.target=my_rerankers:make")
    result = evalkit.run(overrides, tmp_path / "run")
    assert result.metrics["reranked"]["nDCG@10"] >= 0
    # 3 queries x top 5 = 15 pairs, every one distinct (one query text each), all stored
    assert result.latency["offline"]["rerank_pairs_scored_in_evaluation"] == 15
    assert cached_pairs(tmp_path / "cache") == 15
    again = evalkit.run(overrides, tmp_path / "run-again")
    assert again.latency["offline"]["rerank_pairs_scored_in_evaluation"] == 0  # all cached


def test_evalkit_run_writes_where_evalkit_run_would_and_names_keep_their_meaning(
    tmp_path, monkeypatch
):
    import evalkit

    monkeypatch.chdir(tmp_path)
    result = evalkit.run([*QUICK, f"cache.dir={tmp_path / 'cache'}", "reranker=none"])
    assert result.folder.parent == Path("results") / "runs"
    assert result.folder.name.endswith("_cranfield_bm25")
    # importing every module a run uses must not shadow the API's functions
    for name in ("run", "load", "compare", "decide", "compose"):
        assert callable(getattr(evalkit, name)), name
    assert evalkit.load.__module__ == "evalkit"
    [loaded] = evalkit.load("results")
    assert loaded.metrics["first_stage"] == result.metrics["first_stage"]


NEW_KIND = '''
"""A second stage that scores by shared words: the whole of a new reranker kind."""
import numpy as np


class SharedWords:
    max_length, device = None, "cpu"

    def __init__(self, weight):
        self.weight = weight
        self.fingerprint = f"shared-words-x{weight}"

    def token_lengths(self, pairs):
        return np.array([len(q.split()) + len(d.split()) for q, d in pairs])

    def score(self, pairs, on_done=None, lengths=None, progress=None):
        return np.array(
            [self.weight * len(set(q.split()) & set(d.split())) for q, d in pairs], "float64"
        )


def build(config):
    return SharedWords(weight=2.0)
'''


@pytest.fixture
def shared_words_kind(tmp_path, monkeypatch):
    from evalkit.config.registry import RERANKERS, Kind

    (tmp_path / "shared_words.py").write_text(textwrap.dedent(NEW_KIND))
    monkeypatch.syspath_prepend(str(tmp_path))
    RERANKERS.register(Kind("shared_words", "shared_words:build"))
    yield
    RERANKERS.unregister("shared_words")
    sys.modules.pop("shared_words", None)


def test_a_new_reranker_kind_is_one_module_and_one_registry_entry(shared_words_kind, tmp_path):
    from evalkit.config import build_scorer, validate
    from evalkit.runner import run_experiment

    overrides = [*QUICK, f"cache.dir={tmp_path / 'cache'}", "reranker=none"]
    overrides += ["reranker.kind=shared_words", "reranker.name=shared_words"]
    config = validate(compose(overrides))
    scorer = build_scorer(config)
    assert list(scorer.score([("a b c", "b c d")])) == [4.0]  # 2 shared words x weight 2
    result = run_experiment(compose(overrides), tmp_path / "run")
    assert result.identity.name() == "bm25 → shared_words@5"
    assert result.identity.reranker["fingerprint"] == "shared-words-x2.0"
    assert set(result.per_query.stage) == {"first_stage", "reranked"}


def test_an_unknown_kind_is_refused_with_the_nearest_choices():
    from evalkit.config import validate
    from evalkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown reranker.kind 'crossencoder'.*'cross_encoder'"):
        validate(compose(["reranker.kind=crossencoder"]))


@pytest.mark.parametrize(
    ("returned", "found"),
    [
        (lambda n: [1.0] * (n - 1), r"shape \(\d+,\)"),
        (lambda n: [[1.0, 2.0]] * n, r"shape \(\d+, 2\)"),
        (lambda n: ["high"] * n, "non-numbers"),
        (lambda n: [1.0, float("nan"), float("inf")][:n], "2 NaN or infinite scores"),
    ],
)
def test_a_second_stage_returning_the_wrong_scores_is_one_line(returned, found):
    import pandas as pd

    from evalkit.errors import ModelError
    from evalkit.rerank.engine import rerank

    class Wrong:
        fingerprint, max_length, device = "wrong-v1", None, "cpu"

        def token_lengths(self, pairs):
            return [1] * len(pairs)

        def score(self, pairs, on_done=None, lengths=None, progress=None):
            return returned(len(pairs))

    run = pd.DataFrame({"query_id": ["q"] * 3, "doc_id": ["a", "b", "c"], "score": [3.0, 2.0, 1.0]})
    queries = pd.DataFrame({"query_id": ["q"], "text": ["wing"]})
    corpus = pd.DataFrame({"doc_id": ["a", "b", "c"], "title": [""] * 3, "text": ["x", "y", "z"]})
    with pytest.raises(ModelError, match=rf"'wrong-v1' returned {found} for 3 pairs"):
        rerank(run, queries, corpus, 3, Wrong(), show_progress=False)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "def make():\n    raise RuntimeError('no GPU here')\n",
            "raised RuntimeError: no GPU here",
        ),
        ("def make(:\n", "cannot import reranker.target"),  # a syntax error in the module
        (
            "import numpy as np\nclass S:\n    fingerprint, max_length, device = 'b', None, 'cpu'\n"
            "    def token_lengths(self, pairs):\n        return np.ones(len(pairs))\n"
            "    def score(self, pairs, **kw):\n        raise ValueError('bad batch')\n"
            "def make():\n    return S()\n",
            "raised ValueError: bad batch",
        ),
    ],
)
@pytest.mark.slow  # evalkit-run in a subprocess, three times
def test_a_plugin_that_fails_is_the_users_one_line_error(tmp_path, monkeypatch, source, message):
    from tests.test_e2e import evalkit_run

    (tmp_path / "broken_plugin.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    done = evalkit_run(
        *QUICK,
        f"cache.dir={tmp_path / 'cache'}",
        "reranker=python",
        "reranker.target=broken_plugin:make",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert done.returncode == 2, done.stderr[-1500:]
    assert message in done.stderr and "internal error" not in done.stderr
