"""Load and validate a BEIR-format folder.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (header, then ``query-id corpus-id score``).
Problems that make results wrong are errors that name the file and line; problems that a
user may knowingly accept are counted and reported in ``Dataset.warnings``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from evalkit.errors import DataError, problem
from evalkit.io import decoded_lines
from evalkit.trec import GRADE, refuse_repeated_judgments
from evalkit.types import DOC_ID, QUERY_ID, RELEVANCE, Dataset

log = logging.getLogger(__name__)

QRELS_HEADER = ("query-id", "corpus-id", "score")
ON_INVALID = ("warn", "error")


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; errors name the line."""
    if not path.is_file():
        raise DataError(problem(f"missing file {path.name}", str(path), "a BEIR folder needs it"))
    with path.open("rb") as handle:
        for number, line in decoded_lines(handle, path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    problem(
                        f"malformed JSON: {error.msg} at column {error.colno}",
                        f"{path}:{number}",
                        "each line must be one JSON object",
                    )
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    problem(
                        f"expected a JSON object, found {type(record).__name__}",
                        f"{path}:{number}",
                    )
                )
            yield number, record


def check_id(identifier: object, where: str, what: str) -> str:
    """An id usable in TREC files: a non-empty string (or integer) without whitespace or
    control characters; otherwise a :class:`DataError` naming the place."""
    if isinstance(identifier, bool) or not isinstance(identifier, str | int):
        raise DataError(
            problem(
                f"{what} id must be a string, found {type(identifier).__name__} {identifier!r}",
                where,
                "write ids as JSON strings",
            )
        )
    text = str(identifier)
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise DataError(
            problem(
                f"{what} id {text!r} is empty or holds whitespace or control characters, "
                "which TREC run and qrels files cannot carry",
                where,
                "use ids without spaces, tabs, newlines or control characters",
            )
        )
    return text


def _read_texts(path: Path, fields: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read a corpus or queries file into ``id`` + ``fields`` columns, checking ids."""
    ids: list[str] = []
    columns: dict[str, list[str]] = {name: [] for name in fields}
    first_line: dict[str, int] = {}
    for number, record in _jsonl_records(path):
        if "_id" not in record:
            raise DataError(
                problem(
                    f"{what} record without '_id' (found keys {sorted(record)})",
                    f"{path}:{number}",
                    "every line needs an '_id'",
                )
            )
        identifier = check_id(record["_id"], f"{path}:{number}", what)
        if identifier in first_line:
            raise DataError(
                problem(
                    f"duplicate {what} id '{identifier}' (first at line {first_line[identifier]})",
                    f"{path}:{number}",
                    "ids must be unique; remove or rename one of them",
                )
            )
        first_line[identifier] = number
        ids.append(identifier)
        for name in fields:
            value = record.get(name)
            if value is not None and not isinstance(value, str):
                raise DataError(
                    problem(
                        f"{what} field '{name}' must be a string, found "
                        f"{type(value).__name__} {str(value)[:40]!r}",
                        f"{path}:{number}",
                        f"write '{name}' as a JSON string (or null)",
                    )
                )
            columns[name].append(value or "")
    return pd.DataFrame({"id": ids, **columns})


def _qrels_row(fields: list[str], where: str) -> tuple[str, str, int]:
    """One judgment; a grade is an integer in ASCII digits (``2.0``, ``1_0`` and ``٢`` are
    refused, never truncated or read as something else)."""
    if len(fields) < 3:
        raise DataError(
            problem(
                f"qrels line has {len(fields)} column(s), expected 3 "
                f"(query-id, corpus-id, score); found {fields}",
                where,
                "separate the three columns with tabs",
            )
        )
    grade = fields[2].strip(" \t\r\n\v\f")  # C's spaces: str.strip() takes \x1c-\x1f too
    if not GRADE.fullmatch(grade):
        raise DataError(
            problem(
                f"relevance must be an integer, found {fields[2]!r}",
                where,
                "use integer grades (0 = not relevant, 1, 2, ...)",
            )
        )
    return (
        check_id(fields[0], where, "query"),
        check_id(fields[1], where, "document"),
        int(grade),
    )


def _read_qrels(path: Path) -> pd.DataFrame:
    """Read a qrels TSV: header, then ``query-id corpus-id score`` (integers)."""
    rows: list[tuple[str, str, int]] = []
    with path.open("rb") as handle:
        for number, text in decoded_lines(handle, path):
            line = text.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if number == 1 and fields[:1] == ["query-id"]:
                if tuple(fields[:3]) != QRELS_HEADER:
                    raise DataError(
                        problem(
                            f"qrels header must be {list(QRELS_HEADER)} (found {fields})",
                            f"{path}:1",
                            "use tab-separated columns query-id, corpus-id, score",
                        )
                    )
                continue
            rows.append(_qrels_row(fields, f"{path}:{number}"))
    qrels = pd.DataFrame(rows, columns=[QUERY_ID, DOC_ID, RELEVANCE])
    refuse_repeated_judgments(qrels, str(path))
    return qrels


def available_splits(folder: Path) -> list[str]:
    """The qrels splits present in a BEIR folder."""
    return sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))


def load_beir_folder(
    folder: str | Path,
    split: str = "test",
    *,
    name: str | None = None,
    relevance_level: int = 1,
    exclude_self: bool = False,
    on_invalid: str = "warn",
    max_queries: int | None = None,
) -> Dataset:
    """Load a BEIR-format folder, validating it.

    Args:
        folder: directory with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: qrels split to evaluate.
        name: dataset name for reports (default: the folder name).
        relevance_level: minimum grade counted as relevant by binary measures.
        exclude_self: whether a document with the query's id is excluded from rankings.
        on_invalid: ``"warn"`` counts qrels that name unknown queries or documents (unknown
            queries are dropped, unknown documents kept, as trec_eval would); ``"error"``
            refuses them.
        max_queries: evaluate only the first N judged queries (sorted by id), for quick runs.

    Returns:
        A :class:`~evalkit.types.Dataset` whose queries are the judged ones.

    Example:
        >>> from evalkit.data.sources import builtin_path
        >>> ds = load_beir_folder(builtin_path("cranfield"))
        >>> len(ds.corpus), len(ds.queries), len(ds.qrels)
        (1400, 225, 1612)
    """
    folder = Path(folder)
    qrels_path = _checked_paths(folder, split, on_invalid)
    warnings: Counter[str] = Counter()
    corpus = _read_corpus(folder, warnings)
    queries = _read_queries(folder)
    qrels = _read_qrels(qrels_path)
    if qrels.empty:
        raise DataError(problem("the qrels split has no judgments", str(qrels_path)))
    qrels = _known_judgments(qrels, queries, corpus, qrels_path, on_invalid, warnings)
    queries, qrels = _judged_queries(queries, qrels, max_queries, warnings, qrels_path)
    for key, count in warnings.items():
        log.info("dataset %s: %s = %d", folder.name, key, count)
    return Dataset(
        name=name or folder.name,
        corpus=corpus.reset_index(drop=True),
        queries=queries.reset_index(drop=True),
        qrels=qrels.reset_index(drop=True),
        relevance_level=relevance_level,
        exclude_self=exclude_self,
        split=split,
        warnings=dict(warnings),
    )


def _natural_key(identifier: str) -> tuple[int, int | str]:
    """Sort numeric ids numerically and others lexically (numbers first)."""
    return (0, int(identifier)) if identifier.isdigit() else (1, identifier)


def _checked_paths(folder: Path, split: str, on_invalid: str) -> Path:
    """The qrels file of ``split``, after checking the folder and the options."""
    if on_invalid not in ON_INVALID:
        raise DataError(problem(f"on_invalid must be one of {ON_INVALID}, found '{on_invalid}'"))
    if not folder.is_dir():
        try:
            os.stat(folder)
            what = "is a file, not a folder"
        except OSError as error:
            what = "loops through symlinks" if error.errno == errno.ELOOP else "does not exist"
        raise DataError(
            problem(
                f"dataset folder {what}: {folder}",
                fix="point dataset.path at a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)",
            )
        )
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise DataError(
            problem(
                f"split '{split}' not found",
                str(qrels_path),
                f"choose one of {available_splits(folder)} with dataset.split=NAME",
            )
        )
    return qrels_path


def _read_corpus(folder: Path, warnings: Counter) -> pd.DataFrame:
    corpus = _read_texts(folder / "corpus.jsonl", ("title", "text"), "document")
    if corpus.empty:
        raise DataError(problem("the corpus is empty", str(folder / "corpus.jsonl")))
    corpus = corpus.rename(columns={"id": DOC_ID})
    empty = int(((corpus["title"].str.strip() == "") & (corpus["text"].str.strip() == "")).sum())
    if empty:
        warnings["empty_documents"] = empty
    return corpus


def _known_judgments(
    qrels: pd.DataFrame,
    queries: pd.DataFrame,
    corpus: pd.DataFrame,
    qrels_path: Path,
    on_invalid: str,
    warnings: Counter,
) -> pd.DataFrame:
    """Qrels naming unknown queries are dropped, unknown documents kept (as trec_eval
    would); both counted, or refused with ``on_invalid=error``."""
    unknown_query = ~qrels[QUERY_ID].isin(set(queries[QUERY_ID]))
    unknown_doc = ~qrels[DOC_ID].isin(set(corpus[DOC_ID]))
    for mask, kind, source in (
        (unknown_query, "queries", "queries.jsonl"),
        (unknown_doc, "documents", "corpus.jsonl"),
    ):
        if mask.any():
            examples = qrels.loc[mask, QUERY_ID if kind == "queries" else DOC_ID].unique()[:3]
            message = problem(
                f"{int(mask.sum())} qrels lines name {kind} missing from {source} "
                f"(e.g. {list(examples)})",
                str(qrels_path),
                "fix the files, or set dataset.on_invalid=warn to count and continue",
            )
            if on_invalid == "error":
                raise DataError(message)
            log.warning(message)
            warnings[f"qrels_unknown_{kind}"] = int(mask.sum())
    return qrels[~unknown_query].reset_index(drop=True)


def _read_queries(folder: Path) -> pd.DataFrame:
    queries = _read_texts(folder / "queries.jsonl", ("text",), "query")
    if queries.empty:
        raise DataError(problem("the queries file holds no queries", str(folder / "queries.jsonl")))
    return queries.rename(columns={"id": QUERY_ID})


def _judged_queries(
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    max_queries: int | None,
    warnings: Counter,
    qrels_path: Path,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The queries that have judgments (the first ``max_queries`` by id when asked); none
    is a one-line error."""
    judged = set(qrels[QUERY_ID])
    unjudged = len(set(queries[QUERY_ID]) - judged)
    if unjudged:
        warnings["queries_without_judgments_excluded"] = unjudged
    queries = queries[queries[QUERY_ID].isin(judged)]
    if max_queries is not None:
        keep = set(sorted(queries[QUERY_ID], key=_natural_key)[:max_queries])
        queries = queries[queries[QUERY_ID].isin(keep)]
        qrels = qrels[qrels[QUERY_ID].isin(keep)]
    if queries.empty:
        raise DataError(
            problem(
                "no query of queries.jsonl has a judgment in this split",
                str(qrels_path),
                "check that the qrels' query ids are the queries' _id values",
            )
        )
    empty = int((queries["text"].str.strip() == "").sum())
    if empty:
        warnings["empty_queries"] = empty
    return queries, qrels
