"""Resolve a dataset config to a validated :class:`~evalkit.types.Dataset`.

Five sources: ``builtin`` (a collection shipped inside evalkit: ``cranfield``), ``local``
(a BEIR folder on disk), ``hub`` (a BEIR / MTEB repository on the Hugging Face Hub through
``datasets``, pinned to a revision, with the md5-checked BEIR zip as fallback), ``beir``
(the official BEIR zip, downloaded once into the cache and checksummed) and
``ir_datasets`` (any ir_datasets id: MS MARCO passage, TREC DL, ...). Every source is
written once as a BEIR folder and validated by the same loader.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from evalkit.data.beir import load_beir_folder
from evalkit.data.download import download_beir
from evalkit.errors import ConfigError, NetworkError, problem
from evalkit.types import DOC_ID, QUERY_ID, RELEVANCE, Dataset

if TYPE_CHECKING:
    from evalkit.config.schema import DatasetConfig

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


def dataset_folder(config: DatasetConfig, cache_dir: str | Path) -> Path:
    """The BEIR folder a dataset config reads (downloaded or converted into the cache
    first when needed): every source ends as the same validated files. The source is
    looked up in :data:`evalkit.config.registry.SOURCES`."""
    from evalkit.config.registry import SOURCES, resolve

    kind = SOURCES.require(config)
    return resolve(kind.builder)(config, Path(cache_dir))


def local_folder(config: DatasetConfig, cache: Path) -> Path:
    """``dataset=local``: the user's own BEIR folder, read where it is."""
    return Path(config.path).expanduser()


def builtin_folder(config: DatasetConfig, cache: Path) -> Path:
    """A collection shipped with evalkit (``dataset=cranfield``)."""
    return builtin_path(config.name)


def beir_folder(config: DatasetConfig, cache: Path) -> Path:
    """A BEIR zip, md5-checked and extracted once into the cache."""
    return download_beir(config.name, config.url, config.md5, cache)


def hub_folder(config: DatasetConfig, cache: Path) -> Path:
    """A Hub repository through ``datasets``; its BEIR zip when the Hub cannot be reached."""
    from evalkit.data.hub import fetch_hub

    try:
        return fetch_hub(config, cache)
    except NetworkError as error:
        if not config.url:
            raise
        log.warning("%s; falling back to the BEIR zip %s", error, config.url)
        return download_beir(config.name, config.url, config.md5, cache)


def _folder_name(path: Path) -> str:
    try:
        return path.resolve().name
    except (RuntimeError, OSError):  # a symlink loop (Python < 3.13 raises RuntimeError)
        return path.name  # load_beir_folder says what is wrong with the folder


def load_dataset(config: DatasetConfig, cache_dir: str | Path) -> Dataset:
    """Load the dataset a config describes (see ``conf/dataset/*.yaml``)."""
    name = config.name
    if config.source == "local" and name == "local" and config.path:
        name = _folder_name(Path(config.path).expanduser())  # report it as the folder
    if config.source == "ir_datasets" and name == "irds" and config.irds_id:
        name = config.irds_id.replace("/", "_")  # report it as the ir_datasets id
    return load_beir_folder(
        dataset_folder(config, cache_dir),
        config.split,
        name=name,
        relevance_level=config.relevance_level,
        exclude_self=config.exclude_self,
        on_invalid=config.on_invalid,
        max_queries=config.max_queries,
    )


def candidates_path(config: DatasetConfig, cache_dir: str | Path) -> Path:
    """The dataset's own candidate lists (``retriever=top_ranked``): MTEB reranking tasks'
    ``top_ranked``, or ``top_ranked/<split>.trec`` in a local BEIR folder."""
    from evalkit.data.hub import candidates_file

    path = candidates_file(dataset_folder(config, cache_dir), config.split)
    if not path.is_file():
        raise ConfigError(
            problem(
                f"dataset '{config.name}' has no candidate lists for split '{config.split}' "
                f"({path} does not exist)",
                "retriever",
                "retriever=top_ranked needs an MTEB reranking dataset (a top_ranked config) or "
                "a top_ranked/<split>.trec run file in the folder; otherwise choose "
                "retriever=bm25 or a dense retriever",
            )
        )
    return path
