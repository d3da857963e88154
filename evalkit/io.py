"""Atomic file writes, and writing TREC run files (reading them: :mod:`evalkit.trec`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from evalkit.faults import checkpoint
from evalkit.types import DOC_ID, QUERY_ID, RANK, SCORE, rank_run

log = logging.getLogger(__name__)


def atomic_write(path: Path, write: Callable[[Path], None], point: str | None = None) -> None:
    """Write via ``write(tmp)`` then rename over ``path``: readers never see half a file.
    The one place evalkit writes a file atomically (``point``: the kill point's name for the
    crash tests, ``before_rename:<file name>`` by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(scratch)
        with scratch.open("rb") as handle:
            os.fsync(handle.fileno())
        checkpoint(point or f"before_rename:{path.name}")
        os.replace(scratch, path)
    finally:
        if scratch.exists():
            scratch.unlink()


@contextlib.contextmanager
def files_moved_into(out: Path):
    """Write a set of files all or none: the block writes into a scratch folder beside
    ``out``; when it succeeds the files are renamed into ``out`` (renames need no space;
    one writer at a time moves, so two at once leave one whole set), when it fails the
    scratch is deleted -- a full disk or an error never leaves ``out`` half old, half new.
    What the previous set wrote and this one does not (a plot of a system no longer there)
    is removed, read from the names the previous set recorded in ``.evalkit-files``; files
    evalkit did not write are kept. Scratch folders of killed writers (their process gone)
    are removed on the next call."""
    import shutil

    from filelock import FileLock

    out.mkdir(parents=True, exist_ok=True)  # a bad path fails here, before any work
    for stale in out.parent.glob(f".{out.name}.writing-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    scratch = out.parent / f".{out.name}.writing-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
        with FileLock(str(out / ".writing.lock")):
            names = sorted(path.name for path in scratch.iterdir())
            before = _previous_set(out)
            for name in names:
                if (scratch / name).is_dir() and (out / name).is_dir():
                    shutil.rmtree(out / name)
                os.replace(scratch / name, out / name)
            for name in sorted(before - set(names)):
                stale = out / name
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                elif stale.exists() or stale.is_symlink():
                    stale.unlink()
            write_text(out / SET_NAMES, "".join(f"{name}\n" for name in names))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


SET_NAMES = ".evalkit-files"  # the names the last set wrote: what the next may remove


def _previous_set(out: Path) -> set[str]:
    """The names the last set moved into ``out`` (plain names only: an edited list cannot
    reach outside ``out`` or its hidden files)."""
    try:
        lines = (out / SET_NAMES).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return set()
    return {n for n in lines if n and not n.startswith(".") and "/" not in n and "\\" not in n}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def decoded_lines(handle, path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a binary handle's lines, read as UTF-8: bytes that are not
    are a one-line error naming ``path:line``; a byte-order mark at the start (editors and
    Windows tools write one) is removed with a warning, never read as part of an id. The one
    place evalkit decodes a data file's lines (TREC runs and qrels, BEIR jsonl and tsv)."""
    from evalkit.errors import DataError, problem

    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                problem(
                    f"bytes that are not UTF-8 (byte {error.start}: "
                    f"{raw[error.start : error.start + 1]!r})",
                    f"{path}:{number}",
                    f"re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 {path}",
                )
            ) from None
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
            log.warning(
                "%s starts with a UTF-8 byte-order mark: removed, not read as part of the "
                "first line (trec_eval would read it as part of the first query id)",
                path,
            )
        yield number, line


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def write_trec_run(path: Path, run: pd.DataFrame, tag: str) -> None:
    """Write ``qid Q0 docid rank score tag`` lines in evaluation order (full float precision)."""
    ranked = rank_run(run)
    lines = [
        f"{q} Q0 {d} {r} {s!r} {tag}\n"
        for q, d, r, s in zip(
            ranked[QUERY_ID], ranked[DOC_ID], ranked[RANK], ranked[SCORE].astype(float), strict=True
        )
    ]
    write_text(path, "".join(lines))
