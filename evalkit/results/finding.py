"""Finding result folders below a folder, the way a user laid them out."""

from __future__ import annotations

import logging
from pathlib import Path

from evalkit.errors import DataError, problem
from evalkit.results.layout import COMPLETE, METRICS
from evalkit.results.run_result import RunResult

log = logging.getLogger(__name__)


def _run_folders(root: Path) -> list[Path]:
    """Every folder below ``root`` that holds a run's files, symlinked folders followed
    (as a user links runs into a sweep) with a guard against loops."""
    import os

    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree, or a second link to the same run
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort()
        if COMPLETE in files or METRICS in files:
            found.append(Path(folder))
    return sorted(found)


def find_results(results_dir: str | Path) -> list[RunResult]:
    """Every finished run below ``results_dir`` (unfinished and damaged ones are skipped,
    with a warning naming them)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(
            problem(
                f"results folder does not exist: {root}",
                fix="pass the folder evalkit-run wrote into (e.g. results/sweeps/NAME)",
            )
        )
    results = []
    folders = _run_folders(root)
    for folder in folders:
        if not (folder / COMPLETE).is_file():
            if (folder / METRICS).is_file():
                log.warning("skipping unfinished run %s (no %s)", folder, COMPLETE)
            continue
        try:
            results.append(RunResult.load(folder))
        except DataError as error:
            log.warning("skipping %s: %s", folder, error)
    if not results:
        raise DataError(
            problem(
                f"no finished runs below {root}",
                fix="run evalkit-run (or a sweep with -m) into this folder first",
            )
        )
    return results
