"""The result folder's file names and its completion marker: nothing else names them."""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.errors import DataError, problem

# metrics.json -> format: 1 (no key: folders before records were versioned), 2 (now). A
# reader of format N reads every format up to N and refuses newer ones.
RESULT_FORMAT = 2

CONFIG = "config.yaml"
METRICS = "metrics.json"
PER_QUERY = "per_query.parquet"
LATENCY = "latency.json"
ENV = "env.json"
LOAD = "load.json"
QUERY_FEATURES = "query_features.parquet"
COMPLETE = "complete.json"
DEPTH_CURVE = ("latency_vs_depth.csv", "latency_vs_depth.png", "latency_vs_depth.svg")
LOAD_PLOT = ("load.png", "load.svg")
STAGES = ("first_stage", "reranked")
FIRST_STAGE_PARTS = ("query_encoding", "first_stage")
PER_QUERY_COLUMNS = ["stage", "query_id", "measure", "value"]


def run_file(stage: str) -> str:
    return f"run.{stage}.trec"


RESULT_FILES = (
    CONFIG,
    METRICS,
    PER_QUERY,
    *(run_file(s) for s in STAGES),
    LATENCY,
    ENV,
    LOAD,
    *LOAD_PLOT,
    QUERY_FEATURES,
    *DEPTH_CURVE,
)


def completion(folder: str | Path) -> dict | None:
    """The completion marker's content, or None when the folder is not finished."""
    marker = Path(folder) / COMPLETE
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_results(folder: Path) -> None:
    """Delete a run's result files (an unfinished folder may hold another config's)."""
    for name in RESULT_FILES:
        (folder / name).unlink(missing_ok=True)


def _read_json(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def check_format(folder: Path, metrics: dict) -> int:
    """The folder's format (1 when unmarked); a newer one than this evalkit reads is a
    one-line error saying what to do."""
    found = metrics.get("format", 1)
    if not isinstance(found, int) or isinstance(found, bool) or not 1 <= found <= RESULT_FORMAT:
        raise DataError(
            problem(
                f"result folder {folder} has format {found!r}; this evalkit reads formats 1 "
                f"to {RESULT_FORMAT}",
                str(folder / "metrics.json"),
                "upgrade evalkit to read it, or rerun it into a fresh folder with this one",
            )
        )
    return found
