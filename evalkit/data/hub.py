"""Datasets from the Hugging Face Hub through ``datasets``, pinned to a revision.

MTEB's retrieval and reranking repositories (``mteb/scifact``, ``mteb/SciDocsRR``) hold
the configs ``corpus`` (``_id, title, text``), ``queries`` (``_id, text``), ``default``
(qrels: ``query-id, corpus-id, score``, one split per qrels split) and, for reranking
tasks, ``top_ranked`` (``query-id, corpus-ids``: each query's candidate list). BEIR's own
repositories (``BeIR/scifact``) keep the qrels in a second repository
(``BeIR/scifact-qrels``): ``dataset.qrels_hub_id``.

Whatever the source, the data is written once into the cache as a BEIR folder (plus
``top_ranked/<split>.trec`` when there are candidate lists) and loaded by
:func:`~evalkit.data.beir.load_beir_folder`, so every dataset is validated by the same
rules. ``dataset.hub_id`` may also be a local folder laid out like a Hub repository (a
README with ``configs``); it goes through the same ``datasets`` calls.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evalkit.artifacts import COMPLETE, build_folder_once
from evalkit.errors import ConfigError, DataError, NetworkError, problem

if TYPE_CHECKING:
    from evalkit.config.schema import DatasetConfig

log = logging.getLogger(__name__)

TOP_RANKED = "top_ranked"


def candidates_file(folder: Path, split: str) -> Path:
    """Where a converted dataset keeps its candidate lists (MTEB ``top_ranked``)."""
    return folder / TOP_RANKED / f"{split}.trec"


def hub_folder(config: DatasetConfig, cache_dir: Path) -> Path:
    """The cache folder a Hub dataset is converted into (keyed by repository, revision and,
    for a local folder, its files' sizes and times)."""
    from evalkit.cache import digest

    source = config.hub_id or ""
    local = Path(source).expanduser()
    if local.is_dir():
        files = sorted(p for p in local.rglob("*") if p.is_file())
        stamp = digest(*(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files))
        name = f"local-{local.resolve().name}-{stamp[:12]}"
    else:
        name = f"{source}@{config.revision or 'main'}"
    if config.qrels_hub_id:
        name += f"+{config.qrels_hub_id}"
    return Path(cache_dir) / "datasets" / "hub" / re.sub(r"[^A-Za-z0-9@._+-]", "_", name)


def fetch_hub(config: DatasetConfig, cache_dir: Path) -> Path:
    """Convert ``config.hub_id`` at ``config.revision`` into a BEIR folder once; return it.

    Raises:
        NetworkError: the Hub cannot be reached (the caller may fall back to the BEIR zip).
        DataError: the repository does not have the expected configs or columns.
    """
    folder = hub_folder(config, cache_dir)
    if (folder / COMPLETE).is_file():
        return folder
    local = Path(config.hub_id or "").expanduser().is_dir()
    if not local:
        from evalkit.models.hub import hub_reachable

        if not hub_reachable():
            raise NetworkError(
                problem(
                    f"the Hugging Face Hub is not reachable for dataset '{config.hub_id}'",
                    "dataset.hub_id",
                    "download it where there is network (datasets' cache, or the BEIR zip) "
                    "and run with dataset=local dataset.path=DIR",
                )
            )
        if not config.revision:
            log.warning(
                "dataset %s has no pinned revision: results may change when the repository "
                "does (set dataset.revision=COMMIT)",
                config.hub_id,
            )
    return build_folder_once(
        folder, lambda target: _convert(config, target), json.dumps({"revision": config.revision})
    )


def _table(repo: str, name: str | None, revision: str | None, split: str | None) -> pd.DataFrame:
    """One config of a repository as a frame: the asked split, or its only split."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            problem("the 'datasets' package is not installed", fix="pip install 'evalkit[hub]'")
        ) from None
    import yaml

    bars = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()  # "Generating corpus split": not ours
    try:
        # a local folder is converted once per its files' stamp; datasets' own cache would
        # serve an edit of the same size and time stale (seen: a renamed column): rebuild
        fresh = {"download_mode": "force_redownload"} if Path(repo).expanduser().is_dir() else {}
        loaded = datasets.load_dataset(repo, name, revision=revision, **fresh)
    except yaml.YAMLError as error:  # the README's front matter (its `configs`)
        raise DataError(
            problem(
                f"the README.md of '{repo}' has front matter that is not valid YAML "
                f"({str(error).splitlines()[0]})",
                "dataset.hub_id",
                "fix the `configs:` block between the two `---` lines of its README.md",
            )
        ) from None
    except (ValueError, FileNotFoundError) as error:
        raise DataError(
            problem(
                f"cannot load config '{name or 'default'}' of '{repo}': "
                f"{str(error).splitlines()[0]}",
                "dataset.hub_id",
                "is it a BEIR/MTEB retrieval repository (configs corpus, queries, default)?",
            )
        ) from None
    except (OSError, ConnectionError) as error:
        raise NetworkError(problem(f"cannot fetch '{repo}' ({error})", "dataset.hub_id")) from None
    finally:
        if bars:
            datasets.utils.logging.enable_progress_bar()
    splits = list(loaded)
    chosen = split if split in splits else (splits[0] if len(splits) == 1 else None)
    if chosen is None:
        raise DataError(
            problem(
                f"'{repo}' config '{name or 'default'}' has no split '{split}'",
                "dataset.split",
                f"choose one of {splits}",
            )
        )
    return loaded[chosen].to_pandas()


def _ids(frame: pd.DataFrame, what: str, repo: str) -> pd.Series:
    column = "_id" if "_id" in frame.columns else "id" if "id" in frame.columns else None
    if column is None:
        raise DataError(
            problem(f"{what} of '{repo}' has no '_id' column (found {list(frame.columns)})")
        )
    return frame[column].astype(str)


def _text(frame: pd.DataFrame, what: str, repo: str) -> pd.Series:
    """The ``text`` column, or a one-line error naming the columns there are."""
    if "text" not in frame.columns or (len(frame) and frame["text"].isna().all()):
        # (datasets may add a declared column as all-null when the files lack it)
        found = [c for c in frame.columns if c != "text" or not frame[c].isna().all()]
        raise DataError(
            problem(
                f"{what} of '{repo}' has no 'text' column (found {found})",
                "dataset.hub_id",
                "BEIR/MTEB retrieval repositories have _id and text (and title) columns",
            )
        )
    return frame["text"]


def _write_jsonl(path: Path, records) -> None:
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _convert(config: DatasetConfig, target: Path) -> None:
    repo, revision, split = config.hub_id, config.revision, config.split
    target.mkdir(parents=True)
    corpus = _table(repo, "corpus", revision, None)
    ids = _ids(corpus, "corpus", repo)
    titles = corpus["title"] if "title" in corpus.columns else pd.Series("", index=corpus.index)
    _write_jsonl(
        target / "corpus.jsonl",
        (
            {"_id": i, "title": t or "", "text": x or ""}
            for i, t, x in zip(ids, titles, _text(corpus, "corpus", repo), strict=True)
        ),
    )
    queries = _table(repo, "queries", revision, None)
    _write_jsonl(
        target / "queries.jsonl",
        (
            {"_id": i, "text": t}
            for i, t in zip(
                _ids(queries, "queries", repo), _text(queries, "queries", repo), strict=True
            )
        ),
    )
    qrels_repo = config.qrels_hub_id or repo
    qrels = _table(qrels_repo, None if config.qrels_hub_id else "default", revision, split)
    missing = [c for c in ("query-id", "corpus-id", "score") if c not in qrels.columns]
    if missing:
        raise DataError(problem(f"qrels of '{qrels_repo}' lack columns {missing}"))
    (target / "qrels").mkdir()
    with (target / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for row, (q, d, s) in enumerate(
            zip(qrels["query-id"], qrels["corpus-id"], qrels["score"], strict=True), start=1
        ):
            out.write(f"{q}\t{d}\t{exact_grade(s, qrels_repo, row)}\n")
    if _has_config(repo, TOP_RANKED, revision):
        _write_top_ranked(_table(repo, TOP_RANKED, revision, split), candidates_file(target, split))


def exact_grade(value, repo: str, row: int) -> int:
    """A grade as an integer, or a one-line error: 0.7 is never truncated to 0 (the local
    loader has the same rule)."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        number = None
    else:
        number = float(value)
    if number is None or not math.isfinite(number) or number != int(number):
        raise DataError(
            problem(
                f"qrels of '{repo}' row {row}: grade {value!r} is not an integer",
                fix="grades are integers (0 = not relevant, 1, 2, ...): fix the dataset or "
                "round its grades deliberately",
            )
        )
    return int(number)


def _has_config(repo: str, name: str, revision: str | None) -> bool:
    import datasets

    try:
        return name in datasets.get_dataset_config_names(repo, revision=revision)
    except (ValueError, FileNotFoundError, OSError):
        return False


def _write_top_ranked(frame: pd.DataFrame, path: Path) -> None:
    """Candidate lists as a TREC run: the given order, scores n, n-1, ..., 1."""
    if not {"query-id", "corpus-ids"} <= set(frame.columns):
        raise DataError(
            problem(f"top_ranked needs columns query-id, corpus-ids (found {list(frame.columns)})")
        )
    path.parent.mkdir(parents=True)
    with path.open("w", encoding="utf-8") as out:
        for query, candidates in zip(frame["query-id"], frame["corpus-ids"], strict=True):
            candidates = list(candidates)
            for rank, doc in enumerate(candidates, start=1):
                out.write(f"{query} Q0 {doc} {rank} {len(candidates) - rank + 1} top_ranked\n")
