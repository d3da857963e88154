"""Building a folder-shaped artifact once: datasets, BM25 indexes, random models, ONNX
exports (:func:`build_folder_once`)."""

from __future__ import annotations

import logging
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)


COMPLETE = ".complete"  # written last into a folder built by build_folder_once


def build_folder_once(
    folder: Path, convert, stamp: str = "", verify: bool = False, what: str = "folder"
) -> Path:
    """Build ``folder`` with ``convert(target)`` once: in a scratch folder renamed into place
    (a killed build never looks finished), one process at a time (a file lock). The one way
    evalkit builds a folder-shaped artifact (datasets, BM25 indexes, random models, ONNX
    exports).

    With ``verify``, a manifest of checksums is written last and checked on every use: a
    damaged folder is set aside and rebuilt, never used.
    """
    import shutil
    import tempfile

    from evalkit.cache import verify_manifest
    from evalkit.cache_root import record_entry

    folder.parent.mkdir(parents=True, exist_ok=True)
    record_entry(folder, Path(str(folder) + ".lock"))
    with FileLock(str(folder) + ".lock"):
        if (folder / COMPLETE).is_file():
            if not verify or verify_manifest(folder):
                return folder
            log.warning("cached %s %s is damaged; rebuilding it", what, folder)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".build-") as scratch:
            record_entry(Path(scratch))  # a build killed mid-way leaves it: clear deletes it
            target = Path(scratch) / "data"
            convert(target)
            (target / COMPLETE).write_text(stamp)
            if verify:
                from evalkit.cache import write_manifest

                write_manifest(target)
            if folder.exists():
                shutil.rmtree(folder)
            target.rename(folder)
    return folder
