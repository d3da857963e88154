"""Digests of every input besides the config and the data that can change a run's numbers:
local model folders (weights, module configs, tokenizer files), run files, plugin source.

They go into the resume key (``complete.json`` -> ``inputs``): a model edited in place or a
run file rewritten is recomputed, never served from the old folder. A digest is computed
once per file state: reused while a file's path, size and modification time are the same.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from evalkit.config.schema import Config

_MEMO: dict[tuple, str] = {}
SKIPPED = (".md",)  # documentation never changes an output


def folder_digest(folder: Path) -> str:
    """Every file of a folder but its documentation and dot-files, by content."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix not in SKIPPED
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    state = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder.resolve()), state)
    if key not in _MEMO:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(block)
        _MEMO[key] = digest.hexdigest()[:24]
    return _MEMO[key]


def file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MEMO:
        _MEMO[key] = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    return _MEMO[key]


def _local(value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.exists() else None


def input_digests(config: Config) -> dict[str, str]:
    """``{setting: digest}`` of the local inputs the config names (hub models are keyed by
    their revision in the config and model fingerprints instead)."""
    out = {}
    for key, value in (
        ("retriever.model", config.retriever.model),
        ("reranker.model", config.reranker.model),
        ("retriever.path", config.retriever.path),
    ):
        path = _local(value)
        if path is not None:
            out[key] = folder_digest(path) if path.is_dir() else file_digest(path)
    target = config.reranker.target
    if config.reranker.kind == "python" and target:
        spec = importlib.util.find_spec(target.partition(":")[0])
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            out["reranker.target"] = file_digest(Path(spec.origin))
    return out
