"""The cache root: the marker that says evalkit made it, the manifest of what evalkit made
in it, and ``evalkit-cache info`` / ``clear`` over that manifest.

* :func:`ensure_cache_root` -> the root, with its marker: written only into a folder evalkit
  creates (or an empty one), never into a folder of the user's.
* :func:`record_entry` -> each artifact is listed in the root's manifest (:data:`ENTRIES`)
  as it is made: cached files, built folders, token shards, the pair-score database.
* :func:`clear_cache` -> deletes what the manifest lists and nothing else (a user's file, or
  one from before the manifest existed, is kept and named); :func:`cache_sizes` -> bytes by kind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from evalkit.io import write_text

log = logging.getLogger(__name__)

MARKER = ".evalkit-cache"
ENTRIES = ".evalkit-entries"  # what evalkit made under the root: one relative path per line
# every kind of artifact evalkit keeps under a cache root: name -> top-level files or folders
CACHE_KINDS = {
    "pair_scores": ("pair_scores.sqlite",),
    "embeddings": ("embeddings",),
    "runs": ("runs",),
    "bm25": ("bm25",),
    "random_models": ("random_models",),
    "onnx": ("onnx",),
    "datasets": ("datasets",),
    "tokens": ("tokens",),
}


def _cache_root_of(path: Path) -> Path | None:
    """The nearest folder above ``path`` that carries evalkit's marker, if any."""
    for parent in Path(path).absolute().parents:
        if (parent / MARKER).is_file():
            return parent
    return None


def _read_entries(root: Path) -> list[str]:
    """The manifest's lines; a line that is not UTF-8 (an edit, a torn disk) is skipped,
    never the whole manifest."""
    try:
        raw = (root / ENTRIES).read_bytes()
    except OSError:
        return []
    lines = []
    for line in raw.split(b"\n"):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            log.warning("%s: skipping a line that is not UTF-8", root / ENTRIES)
            continue
        if text:
            lines.append(text)
    return lines


def record_entry(*paths: Path) -> None:
    """Add ``paths`` (files or folders about to be made) to their cache root's manifest, so
    ``evalkit-cache clear`` deletes them -- and only what was recorded. Paths outside an
    evalkit cache root (no marker above them) are not recorded. Appends take a file lock:
    the jobs of a sweep share one root; a cache hit (everything listed already) reads the
    manifest once and takes no lock."""
    names: dict[Path, list[str]] = {}
    for path in paths:
        root = _cache_root_of(path)
        if root is not None:
            names.setdefault(root, []).append(Path(path).absolute().relative_to(root).as_posix())
    for root, wanted in names.items():
        if set(wanted) <= set(_read_entries(root)):
            continue
        try:
            with FileLock(str(root / ENTRIES) + ".lock"):
                listed = set(_read_entries(root))  # again: another job may have added them
                missing = [n for n in dict.fromkeys(wanted) if n not in listed]
                with (root / ENTRIES).open("a", encoding="utf-8") as out:
                    out.write("".join(n + "\n" for n in missing))
        except OSError as error:  # a read-only cache fails where the artifact is written
            log.debug("could not record %s in %s: %s", wanted, root / ENTRIES, error)


def ensure_cache_root(root: str | Path) -> Path:
    """The cache root, with the marker that says evalkit owns it: written only into a
    folder evalkit creates (or an empty one), never into a folder of the user's, so
    ``evalkit-cache clear`` can never delete what evalkit did not make."""
    from evalkit.errors import ConfigError, problem

    root = Path(root).expanduser()
    marker = root / MARKER
    if marker.is_file():
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        found = (
            "a file"
            if not root.is_dir()
            else f"a folder holding {len(list(root.iterdir()))} entries"
        )
        raise ConfigError(
            problem(
                f"cache.dir={root} is {found} that evalkit did not create (no {MARKER} marker)",
                "cache.dir",
                "give evalkit a folder of its own: a new or empty one, e.g. "
                f"cache.dir={root / 'evalkit-cache'}",
            )
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            f"evalkit cache: `evalkit-cache clear` deletes what {ENTRIES} lists, nothing else\n"
        )
        (root / ENTRIES).touch()
    except OSError as error:
        raise ConfigError(
            problem(f"cannot create the cache folder {root}: {error.strerror}", "cache.dir")
        ) from None
    return root


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    if path.is_dir():
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())
    return 0


def _owned_root(root: Path) -> Path:
    from evalkit.errors import DataError, problem

    if not (root / MARKER).is_file():
        raise DataError(
            problem(
                f"{root} is not an evalkit cache (no {MARKER} marker); nothing was touched",
                "--dir",
                "pass the folder evalkit caches into (cache.dir, default ~/.cache/evalkit)",
            )
        )
    manifest = root / ENTRIES
    if manifest.exists() and (manifest.is_symlink() or not manifest.is_file()):
        raise DataError(
            problem(
                f"{manifest} (evalkit's manifest of what it made) is not a plain file; "
                "nothing was touched",
                "--dir",
                "remove it; evalkit keeps a new one (entries made before are then kept, "
                "not deleted)",
            )
        )
    return root


def _listed(root: Path) -> list[Path]:
    """The manifest's entries that are safe to delete: relative, inside ``root``, not the
    root's own files, never through a symlinked folder (an edited manifest cannot point
    clear at anything outside the cache)."""
    out = []
    for name in dict.fromkeys(_read_entries(root)):
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts or parts[0] in _ROOT_FILES:
            continue
        path = root / name
        if any((root / Path(*parts[:n])).is_symlink() for n in range(1, len(parts))):
            continue
        out.append(path)
    return out


_ROOT_FILES = (MARKER, ENTRIES, ENTRIES + ".lock")


def _kind_of(root: Path, path: Path) -> str | None:
    top = path.relative_to(root).parts[0]
    for kind, names in CACHE_KINDS.items():
        if any(top == n or top.startswith(n + "-") or top.startswith(n + ".") for n in names):
            return kind
    return None


def _unlisted(root: Path, listed: list[Path]) -> list[Path]:
    """Top-most paths under ``root`` that hold something evalkit did not record."""
    covered = {p.absolute() for p in listed}

    def walk(folder: Path) -> list[Path]:
        found = []
        for child in sorted(folder.iterdir()):
            if folder == root and child.name in _ROOT_FILES:
                continue
            if child.absolute() in covered:
                continue
            if child.is_dir() and not child.is_symlink():
                inner = walk(child)
                kind_folder = folder == root and _kind_of(root, child) is not None
                if not kind_folder and inner and len(inner) == sum(1 for _ in child.iterdir()):
                    found.append(child)  # nothing in it is evalkit's: name the folder
                else:
                    found.extend(inner)
            else:
                found.append(child)
        return found

    return walk(root)


def cache_sizes(cache_dir: str | Path) -> dict[str, int]:
    """Bytes held by each kind of artifact evalkit recorded, and under ``"not evalkit's"``
    what the folder holds that evalkit did not make (all zero for a folder not there yet)."""
    root = Path(cache_dir).expanduser()
    sizes = dict.fromkeys([*CACHE_KINDS, "not evalkit's"], 0)
    if not root.exists():
        return sizes
    _owned_root(root)
    listed = [p for p in _listed(root) if p.exists() or p.is_symlink()]
    for path in listed:
        kind = _kind_of(root, path)
        sizes[kind if kind else "not evalkit's"] += _size(path)
    sizes["not evalkit's"] += sum(_size(p) for p in _unlisted(root, listed))
    return sizes


@dataclass(frozen=True)
class Cleared:
    """What ``evalkit-cache clear`` did: bytes freed, and what it left (not evalkit's)."""

    freed: int
    kept: tuple[Path, ...]


def clear_cache(cache_dir: str | Path) -> Cleared:
    """Delete every artifact evalkit's manifest lists under ``cache_dir``, nothing else.

    Refuses a folder without evalkit's marker. A file or folder evalkit did not record (a
    user's own, or one from before the manifest existed) is kept and named in the result;
    folders left empty by the deletions are removed.
    """
    root = Path(cache_dir).expanduser()
    if not root.exists():
        return Cleared(0, ())
    _owned_root(root)
    freed = 0
    failed: list[str] = []
    with FileLock(str(root / ENTRIES) + ".lock"):
        for path in _listed(root):
            if not (path.exists() or path.is_symlink()):
                continue
            size = _size(path)
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError as error:
                log.warning("could not delete %s: %s", path, error)
                failed.append(path.relative_to(root).as_posix())
                continue
            freed += size
            _remove_empty_parents(root, path.parent)
        write_text(root / ENTRIES, "".join(name + "\n" for name in failed))
    for kind_names in CACHE_KINDS.values():
        for name in kind_names:
            with contextlib.suppress(OSError):
                if (root / name).is_dir() and not (root / name).is_symlink():
                    (root / name).rmdir()  # only when empty
    return Cleared(freed, tuple(_unlisted(root, [root / n for n in failed])))


def _remove_empty_parents(root: Path, folder: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
