"""Any ir_datasets id (``dataset=irds dataset.irds_id=beir/scifact/test``), written once as
a BEIR folder in the cache and loaded by the same validating loader as every source.

ir_datasets keeps its own download cache; evalkit only converts: documents' ``text`` (or
``body``) with their ``title`` when they have one, queries' ``text`` (or ``title`` for TREC
topics), and the qrels of the id's split.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from evalkit.artifacts import COMPLETE, build_folder_once
from evalkit.errors import ConfigError, DataError, NetworkError, problem

if TYPE_CHECKING:
    from evalkit.config.schema import DatasetConfig


def fetch_irds(config: DatasetConfig, cache_dir: Path) -> Path:
    """Convert ``config.irds_id`` into a BEIR folder once (``qrels/<split>.tsv``)."""
    try:
        import ir_datasets
    except ImportError:
        raise ConfigError(
            problem("ir_datasets is not installed", fix="pip install 'evalkit[hub]'")
        ) from None
    if not config.irds_id:
        raise ConfigError(problem("dataset=irds needs dataset.irds_id", "dataset.irds_id"))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", config.irds_id)
    folder = Path(cache_dir) / "datasets" / "irds" / name
    if (folder / COMPLETE).is_file():
        return folder
    try:
        handle = ir_datasets.load(config.irds_id)
    except KeyError:
        raise ConfigError(
            problem(
                f"ir_datasets has no dataset '{config.irds_id}'",
                "dataset.irds_id",
                "see https://ir-datasets.com for the ids (e.g. beir/nfcorpus/test)",
            )
        ) from None
    for part in ("docs", "queries", "qrels"):
        if not getattr(handle, f"has_{part}")():
            raise DataError(
                problem(
                    f"ir_datasets '{config.irds_id}' has no {part}",
                    "dataset.irds_id",
                    "choose an id with documents, queries and qrels (often a '/test' subset)",
                )
            )

    def convert(target: Path) -> None:
        try:
            _convert(handle, target, config.split, config.irds_id)
        except (OSError, ConnectionError) as error:
            raise NetworkError(
                problem(
                    f"ir_datasets could not fetch '{config.irds_id}' ({error})",
                    fix="download it on a machine with network access (ir_datasets "
                    "export), convert to a BEIR folder and run with dataset=local "
                    "dataset.path=DIR",
                )
            ) from None

    return build_folder_once(folder, convert, config.irds_id)


def _convert(handle, target: Path, split: str, irds_id: str) -> None:
    target.mkdir(parents=True)
    (target / "qrels").mkdir()
    with (target / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc in tqdm(handle.docs_iter(), desc=f"convert {irds_id}", unit="doc"):
            text = getattr(doc, "text", None) or getattr(doc, "body", None) or ""
            record = {"_id": doc.doc_id, "title": getattr(doc, "title", "") or "", "text": text}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    with (target / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query in handle.queries_iter():
            text = getattr(query, "text", None) or getattr(query, "title", None) or ""
            out.write(json.dumps({"_id": query.query_id, "text": text}, ensure_ascii=False) + "\n")
    with (target / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for qrel in handle.qrels_iter():
            out.write(f"{qrel.query_id}\t{qrel.doc_id}\t{int(qrel.relevance)}\n")
