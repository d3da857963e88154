"""Resolve a dataset config to a validated :class:`~evalkit.types.Dataset`.

Four sources: ``builtin`` (a collection shipped inside evalkit: ``cranfield``), ``local``
(a BEIR folder on disk), ``beir`` (the official BEIR zip,
downloaded once into the cache and checksummed) and ``ir_datasets`` (MS MARCO passage and
TREC DL, through the ir_datasets package, which keeps its own cache).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evalkit.data.beir import load_beir_folder
from evalkit.data.download import download_beir
from evalkit.errors import ConfigError, DataError, NetworkError, problem
from evalkit.types import DOC_ID, QUERY_ID, RELEVANCE, Dataset

if TYPE_CHECKING:
    from evalkit.config import DatasetConfig

log = logging.getLogger(__name__)


BUILTIN = Path(__file__).resolve().parents[1] / "datasets"


def builtin_path(name: str) -> Path:
    """The folder of a collection shipped with evalkit (``cranfield``)."""
    folder = BUILTIN / name
    if not (folder / "corpus.jsonl").is_file():
        shipped = sorted(p.name for p in BUILTIN.iterdir() if (p / "corpus.jsonl").is_file())
        raise ConfigError(
            problem(f"no built-in dataset '{name}'", "dataset.name", f"use one of {shipped}")
        )
    return folder


def content_digest(dataset: Dataset) -> str:
    """Digest of everything in a dataset that can change a result: every document's id
    and text, every evaluated query, every judgment, the split and the evaluation flags.
    An edited file gives a new digest, so a result is never served for changed data."""
    from evalkit.cache import digest, texts_digest
    from evalkit.retrieve.base import document_texts

    qrels = dataset.qrels
    return digest(
        texts_digest(dataset.corpus[DOC_ID].astype(str)),
        texts_digest(document_texts(dataset.corpus)),
        texts_digest(dataset.queries[QUERY_ID].astype(str)),
        texts_digest(dataset.queries["text"].astype(str)),
        texts_digest(
            f"{q}\t{d}\t{r}"
            for q, d, r in zip(qrels[QUERY_ID], qrels[DOC_ID], qrels[RELEVANCE], strict=True)
        ),
        dataset.split,
        dataset.relevance_level,
        dataset.exclude_self,
    )


def load_dataset(config: DatasetConfig, cache_dir: str | Path) -> Dataset:
    """Load the dataset a config describes (see ``conf/dataset/*.yaml``)."""
    name = config.name
    if config.source == "local" and name == "local" and config.path:
        name = Path(config.path).expanduser().resolve().name  # report it as the folder
    common = {
        "name": name,
        "relevance_level": config.relevance_level,
        "exclude_self": config.exclude_self,
        "on_invalid": config.on_invalid,
        "max_queries": config.max_queries,
    }
    if config.source == "local":
        if not config.path:
            raise ConfigError(
                problem(
                    "dataset=local needs a folder",
                    "dataset.path",
                    "add dataset.path=/path/to/beir/folder",
                )
            )
        return load_beir_folder(Path(config.path).expanduser(), config.split, **common)
    if config.source == "builtin":
        return load_beir_folder(builtin_path(config.name), config.split, **common)
    if config.source == "beir":
        if not config.url:
            raise ConfigError(problem("dataset.source=beir needs dataset.url", "dataset.url"))
        folder = download_beir(config.name, config.url, config.md5, Path(cache_dir))
        return load_beir_folder(folder, config.split, **common)
    if config.source == "ir_datasets":
        return _load_ir_datasets(config)
    raise ConfigError(
        problem(
            f"unknown dataset.source '{config.source}'",
            "dataset.source",
            "use builtin, local, beir or ir_datasets",
        )
    )


def _load_ir_datasets(config: DatasetConfig) -> Dataset:
    """MS MARCO / TREC DL through ir_datasets, converted to the BEIR shape and validated."""
    try:
        import ir_datasets
    except ImportError:
        raise ConfigError(
            problem("ir_datasets is not installed", fix="pip install 'evalkit[hub]'")
        ) from None
    if not config.irds_id:
        raise ConfigError(problem("dataset.source=ir_datasets needs dataset.irds_id"))
    try:
        handle = ir_datasets.load(config.irds_id)
        queries = pd.DataFrame(
            [(q.query_id, q.text) for q in handle.queries_iter()], columns=[QUERY_ID, "text"]
        )
        qrels = pd.DataFrame(
            [(q.query_id, q.doc_id, int(q.relevance)) for q in handle.qrels_iter()],
            columns=[QUERY_ID, DOC_ID, RELEVANCE],
        )
        corpus = pd.DataFrame(
            [(d.doc_id, getattr(d, "title", "") or "", d.text) for d in handle.docs_iter()],
            columns=[DOC_ID, "title", "text"],
        )
    except (OSError, ConnectionError) as error:
        raise NetworkError(
            problem(
                f"ir_datasets could not fetch '{config.irds_id}' ({error})",
                fix="download it on a machine with network access (ir_datasets export), "
                "convert to a BEIR folder and run with dataset=local dataset.path=DIR",
            )
        ) from None
    if corpus[DOC_ID].duplicated().any():
        raise DataError(problem(f"duplicate document ids in {config.irds_id}"))
    qrels = qrels[qrels[QUERY_ID].isin(set(queries[QUERY_ID]))]
    queries = queries[queries[QUERY_ID].isin(set(qrels[QUERY_ID]))]
    if config.max_queries is not None:
        keep = set(sorted(queries[QUERY_ID])[: config.max_queries])
        queries, qrels = queries[queries[QUERY_ID].isin(keep)], qrels[qrels[QUERY_ID].isin(keep)]
    return Dataset(
        name=config.name,
        corpus=corpus,
        queries=queries.reset_index(drop=True),
        qrels=qrels.reset_index(drop=True),
        relevance_level=config.relevance_level,
        exclude_self=config.exclude_self,
        split=config.split,
    )
