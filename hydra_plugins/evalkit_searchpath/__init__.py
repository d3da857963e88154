"""Hydra search-path plugin: makes the repository's ``experiments/`` folder a config group.

``evalkit-run -m experiments=rerankers`` then composes ``experiments/rerankers.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

REPOSITORY = Path(__file__).resolve().parents[2]


class EvalkitSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if (REPOSITORY / "experiments").is_dir():
            search_path.append(provider="evalkit", path=f"file://{REPOSITORY}")
