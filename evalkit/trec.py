"""Reading TREC files the way trec_eval reads them, with errors that name ``file:line``.

Runs: ``qid Q0 docno rank score tag``; columns after the sixth are ignored (trec_eval's
``results.trunc``), the rank column too (trec_eval sorts by score), blank lines and ``#``
comment lines are skipped (trec_eval 10.0), ``.gz`` files are read as they are. Qrels:
``qid iter docno rel`` (or BEIR's ``query-id corpus-id score`` TSV with its header). A line
that cannot be read is one :class:`~evalkit.errors.DataError` naming the file, the line and
a fix that fits a file another tool wrote.
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from evalkit.errors import DataError, problem
from evalkit.io import decoded_lines
from evalkit.types import DOC_ID, QUERY_ID, RELEVANCE, SCORE

GRADE = re.compile(r"-?[0-9]+")
# trec_eval splits fields on C's isspace() (the C locale): space, \t, \n, \v, \f, \r.
# str.split() also splits on the characters below, which trec_eval reads as part of a field
# (a no-break space inside a docno, an ASCII separator control); a test derives them.
NOT_C_SPACE = re.compile("[\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
C_SPACE_RUN = re.compile("[ \t\n\r\v\f]+")


def trec_fields(line: str) -> list[str]:
    """A line's fields as trec_eval separates them (``str.split`` wherever that agrees).

    Example:
        >>> trec_fields("1 Q0 d\u00a0x 1 2.5 run\\n"), "1 Q0 d\u00a0x".split()
        (['1', 'Q0', 'd\\xa0x', '1', '2.5', 'run'], ['1', 'Q0', 'd', 'x'])
    """
    if NOT_C_SPACE.search(line) is None:
        return line.split()
    return [field for field in C_SPACE_RUN.split(line) if field]


def lines_of(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of every line that is not blank or a ``#`` comment."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for number, line in decoded_lines(handle, path):
                fields = trec_fields(line)
                if fields and not fields[0].startswith("#"):
                    yield number, fields
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        if isinstance(error, FileNotFoundError):
            raise DataError(problem(f"file does not exist: {path}")) from None
        raise DataError(
            problem(f"cannot read {path}: {error}", fix="check the file (a .gz must be gzip)")
        ) from None


def read_trec_run(path: str | Path) -> pd.DataFrame:
    """A TREC run file as ``query_id, doc_id, score``.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run.trec"
        >>> _ = path.write_text("# engine X\\n1 Q0 d2 1 9.5 x extra\\n1 Q0 d1 2 7 x\\n")
        >>> read_trec_run(path).values.tolist()
        [['1', 'd2', 9.5], ['1', 'd1', 7.0]]
    """
    path = Path(path)
    rows = []
    for number, fields in lines_of(path):
        if len(fields) < 6:
            raise DataError(
                problem(
                    f"expected 6 fields (qid Q0 docno rank score tag), found {len(fields)}: "
                    f"{' '.join(fields)!r}",
                    f"{path}:{number}",
                    "write one 'qid Q0 docno rank score tag' line per document",
                )
            )
        try:
            score = float(fields[4])
        except ValueError:
            score = None
        if score is None or not math.isfinite(score):
            raise DataError(
                problem(
                    f"score {fields[4]!r} is not a finite number",
                    f"{path}:{number}",
                    "the engine that wrote the run produced it: fix or drop that line",
                )
            )
        rows.append((fields[0], fields[2], score))
    return pd.DataFrame(rows, columns=[QUERY_ID, DOC_ID, SCORE])


def read_qrels(path: str | Path) -> pd.DataFrame:
    """TREC qrels (``qid iter docno rel``) or a BEIR qrels TSV (header ``query-id corpus-id
    score``) as ``query_id, doc_id, relevance``; a pair judged twice is refused."""
    path = Path(path)
    rows = []
    for number, fields in lines_of(path):
        if number == 1 and fields[:1] == ["query-id"]:
            continue  # BEIR's header
        beir = len(fields) == 3
        if len(fields) not in (3, 4):
            raise DataError(
                problem(
                    f"expected 'qid iter docno rel' (or BEIR's 'query-id corpus-id score'), "
                    f"found {len(fields)} fields",
                    f"{path}:{number}",
                    "write one judgment per line",
                )
            )
        query, doc, grade = (fields[0], fields[1], fields[2]) if beir else (*fields[::2], fields[3])
        if not GRADE.fullmatch(grade):
            raise DataError(
                problem(
                    f"relevance must be an integer, found {grade!r}",
                    f"{path}:{number}",
                    "use integer grades (0 = not relevant, 1, 2, ...)",
                )
            )
        rows.append((query, doc, int(grade)))
    qrels = pd.DataFrame(rows, columns=[QUERY_ID, DOC_ID, RELEVANCE])
    refuse_repeated_judgments(qrels, str(path))
    if qrels.empty:
        raise DataError(problem(f"qrels file {path} holds no judgments"))
    return qrels


def refuse_repeated_judgments(qrels: pd.DataFrame, where: str) -> None:
    """One judgment per (query, document), in every qrels evalkit reads."""
    twice = qrels.duplicated([QUERY_ID, DOC_ID])
    if twice.any():
        first = qrels[twice].iloc[0]
        raise DataError(
            problem(
                f"qrels judge query '{first[QUERY_ID]}' / document '{first[DOC_ID]}' twice",
                where,
                "keep one judgment per pair",
            )
        )


def refuse_repeated_pairs(run: pd.DataFrame, where: str) -> None:
    """One line per (query, document), in every run file evalkit reads."""
    twice = run.duplicated([QUERY_ID, DOC_ID])
    if twice.any():
        first = run[twice].iloc[0]
        raise DataError(
            problem(
                f"run file lists document '{first[DOC_ID]}' twice for query '{first[QUERY_ID]}'",
                where,
                "list each (query, document) pair once",
            )
        )
