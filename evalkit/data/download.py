"""Download BEIR zips once into the cache: checksum verified, extraction kept inside the target."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from filelock import FileLock
from tqdm.auto import tqdm

from evalkit.cache_root import record_entry
from evalkit.errors import DataError, NetworkError, problem

log = logging.getLogger(__name__)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
COMPLETE = ".complete"


def safe_name(name: str, what: str = "dataset name") -> str:
    """Refuse names that could escape a cache directory (``..``, ``/``, absolute paths)."""
    if not SAFE_NAME.match(name) or ".." in name:
        raise DataError(
            problem(
                f"unsafe {what} '{name}'",
                fix="use letters, digits, '.', '_' and '-' only (no '/', no '..')",
            )
        )
    return name


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip into ``target``, refusing members that would land outside it."""
    root = target.resolve()
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            destination = (root / member.filename).resolve()
            if destination != root and root not in destination.parents:
                raise DataError(
                    problem(
                        f"archive member '{member.filename}' would be written outside the "
                        "extraction folder (zip-slip)",
                        str(archive),
                        "the archive is not a genuine BEIR zip; delete it",
                    )
                )
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(
                    problem(f"archive member '{member.filename}' is a symbolic link", str(archive))
                )
        bundle.extractall(root)


def _fetch(url: str, destination: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                destination.open("wb") as out,
                tqdm(
                    total=total, unit="B", unit_scale=True, desc=f"download {Path(url).name}"
                ) as bar,
            ):
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise NetworkError(
            problem(
                f"cannot download {url} ({error})",
                fix="this machine has no access to the dataset host: download the zip "
                "elsewhere, unzip it, and run with dataset=local dataset.path=DIR",
            )
        ) from None


def download_beir(name: str, url: str, md5: str | None, cache_dir: Path) -> Path:
    """Return the folder of BEIR dataset ``name``, downloading and extracting it once.

    The zip is verified against ``md5`` before extraction; extraction goes to a temporary
    folder that is renamed into place, so a killed download never looks complete.
    Concurrent callers (sweep jobs) wait on a file lock instead of downloading twice.
    """
    safe_name(name)
    root = Path(cache_dir) / "datasets" / "beir"
    folder = root / name
    if (folder / COMPLETE).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    record_entry(folder, root / f"{name}.lock")
    with FileLock(str(root / f"{name}.lock")):
        if (folder / COMPLETE).is_file():
            return folder
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as scratch:
            record_entry(Path(scratch))
            scratch_path = Path(scratch)
            archive = scratch_path / f"{name}.zip"
            log.info("downloading %s", url)
            _fetch(url, archive)
            if md5 is not None and md5_of(archive) != md5:
                raise DataError(
                    problem(
                        f"checksum mismatch for {url}: expected md5 {md5}, found {md5_of(archive)}",
                        fix="the download is corrupt or the file changed upstream; retry",
                    )
                )
            extracted = scratch_path / "extracted"
            safe_extract(archive, extracted)
            inner = extracted / name if (extracted / name).is_dir() else extracted
            if not (inner / "corpus.jsonl").is_file():
                raise DataError(problem(f"{url} holds no {name}/corpus.jsonl"))
            (inner / COMPLETE).write_text(md5 or "")
            if folder.exists():
                shutil.rmtree(folder)
            inner.rename(folder)
    return folder
