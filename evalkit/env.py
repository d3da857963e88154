"""What a result depends on besides the config: versions, hardware, code commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "ir-measures",
    "pytrec-eval-terrier",
    "bm25s",
    "numpy",
    "pandas",
    "hydra-core",
    "faiss-cpu",
    "onnxruntime",
    "openvino",
)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# instructions that run bf16 matmuls natively (x86; ARM's flag is "bf16"); without one,
# torch emulates bf16 on the CPU, slower than fp32
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``); None where unknown."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return None


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether the CPU has native bf16 instructions; None where that cannot be read."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else bool(flags & BF16_FLAGS)


def hardware() -> dict:
    info = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_bf16": cpu_has_bf16(),
    }
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    # torch's threads and GPU, where this run used torch. A run that never loaded it (an
    # HTTP reranker, a run file, a plain-Python plugin) ran every timed stage on the CPU:
    # importing torch here only to say so cost 3.5 s of each such run.
    torch = sys.modules.get("torch")
    info["torch_loaded"] = torch is not None
    info["torch_threads"] = torch.get_num_threads() if torch else None
    info["gpu"] = torch.cuda.get_device_name(0) if torch and torch.cuda.is_available() else None
    return info


def git_commit() -> dict:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def code_version() -> str:
    """The project commit (with a dirty marker), or the package version outside a clone."""
    from evalkit import __version__

    info = git_commit()
    if not info["commit"]:
        return f"evalkit-{__version__}"
    return info["commit"] + ("+dirty" if info["dirty"] else "")


def environment(models: dict[str, str]) -> dict:
    return {
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": hardware(),
        "models": models,
        "git": git_commit(),
    }
