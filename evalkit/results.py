"""The result folder, owned by one object: :class:`RunResult` (``save`` / ``load``).

Nothing else in evalkit knows the file names. The runner returns a ``RunResult``;
report, decide, the summary, the CLI and the Python API read result folders only through
:meth:`RunResult.load` / :func:`find_results`.

A system's identity is data, not a name: :class:`Identity` holds everything that changes
its numbers (dataset content and split, retriever settings and model fingerprint, reranker
settings and model fingerprint, depth, first-stage k, evaluation contract). Two folders
with the same identity are the same system (a rerun); two identities are never merged.

Folder layout (the contract in DESIGN.md):

==========================  ==========================================================
``config.yaml``             the fully resolved configuration
``metrics.json``            ``first_stage`` / ``reranked`` measures, ``num_queries``,
                            ``contract``, ``identity``, recall at depth, health, warnings
``per_query.parquet``       one row per (stage, query_id, measure)
``run.<stage>.trec``        TREC run files
``latency.json``            online and offline latency with their conditions
``env.json``                versions, hardware, model fingerprints, git commit
``complete.json``           written last: the resume key and code version
==========================  ==========================================================
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.errors import DataError, problem
from evalkit.io import read_trec_run, write_json, write_parquet, write_text, write_trec_run

log = logging.getLogger(__name__)

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


def _digest(data: object) -> str:
    from evalkit.cache import digest

    return digest(json.dumps(data, sort_keys=True, default=str))


@dataclass(frozen=True)
class Identity:
    """Everything that changes a system's numbers; ``key`` is its digest.

    ``retriever`` and ``reranker`` are flat ``setting -> value`` maps (model fingerprints
    included); ``reranker`` is None for a first stage alone.
    """

    dataset: dict
    retriever: dict
    first_stage_k: int
    contract: str
    reranker: dict | None = None
    depth: int | None = None

    @property
    def key(self) -> str:
        return _digest(self.to_dict())

    @property
    def reranked(self) -> bool:
        return self.reranker is not None

    @property
    def dataset_name(self) -> str:
        return str(self.dataset["name"])

    def first_stage(self) -> Identity:
        """The identity of this system's first stage alone."""
        return replace(self, reranker=None, depth=None)

    def name(self) -> str:
        """The readable name: ``bm25``, ``bm25 → minilm_l6@100``."""
        first = str(self.retriever.get("name"))
        if self.reranker is None:
            return first
        return f"{first} → {self.reranker.get('name')}@{self.depth}"

    def settings(self) -> dict[str, object]:
        """Flat ``retriever.x`` / ``reranker.x`` settings, for labels that tell systems apart."""
        flat = {f"retriever.{k}": v for k, v in self.retriever.items()}
        if self.reranker is not None:
            flat.update({f"reranker.{k}": v for k, v in self.reranker.items()})
        flat["pipeline.first_stage_k"] = self.first_stage_k
        return flat

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "retriever": self.retriever,
            "first_stage_k": self.first_stage_k,
            "contract": self.contract,
            "reranker": self.reranker,
            "depth": self.depth,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Identity:
        return cls(
            dataset=dict(data["dataset"]),
            retriever=dict(data["retriever"]),
            first_stage_k=int(data["first_stage_k"]),
            contract=str(data["contract"]),
            reranker=dict(data["reranker"]) if data.get("reranker") is not None else None,
            depth=int(data["depth"]) if data.get("depth") is not None else None,
        )


@dataclass(frozen=True)
class Latency:
    """Online latency of one system and where the numbers came from."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    qps: float | None = None
    source: str = "not measured"
    samples: list[float] = field(default_factory=list, repr=False)


@dataclass
class System:
    """One evaluated system (a first stage alone, or a two-stage system) from one folder."""

    identity: Identity
    per_query: pd.DataFrame  # index query_id, one column per measure
    latency: Latency
    folder: Path
    hardware: str
    quality_meaningful: bool = True
    pairs_per_second: float | None = None
    pairs_per_second_source: str | None = None
    usd_per_1k_queries: float | None = None  # a priced second stage (evalkit.pricing)
    recall_at_depth: float | None = None
    relevance_level: int = 1
    measured_alone: bool = True  # a first stage from a run without a reranker
    also_in: list[Path] = field(default_factory=list)
    result: RunResult | None = field(default=None, repr=False)  # the run it came from

    @property
    def key(self) -> str:
        return self.identity.key

    @property
    def reranked(self) -> bool:
        return self.identity.reranked

    @property
    def dataset(self) -> str:
        return self.identity.dataset_name


@dataclass
class RunResult:
    """One run's results; the only reader and writer of a result folder.

    Example:
        >>> result = RunResult.load("results/runs/my-run")  # doctest: +SKIP
        >>> result.metrics["reranked"]["nDCG@10"]  # doctest: +SKIP
        0.4043
        >>> [s.identity.name() for s in result.systems()]  # doctest: +SKIP
        ['bm25', 'bm25 → biencoder@30']
    """

    identity: Identity
    config: dict
    metrics: dict
    per_query: pd.DataFrame  # stage, query_id, measure, value
    latency: dict
    env: dict
    folder: Path | None = None
    runs: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    load_curve: dict | None = None
    query_features: pd.DataFrame | None = None  # index query_id: pre-retrieval predictors
    completion: dict = field(default_factory=dict)

    # --- reading ------------------------------------------------------------------------

    @property
    def reranked(self) -> bool:
        """Whether this run has a second stage (a cost-only run has one, unevaluated)."""
        return self.identity.reranked

    @property
    def cost_only(self) -> bool:
        return not self.metrics.get("quality_meaningful", True)

    @property
    def dataset(self) -> str:
        return self.identity.dataset_name

    def stage_table(self, stage: str) -> pd.DataFrame:
        """One stage's per-query values: index ``query_id``, one column per measure
        (no columns for a stage that was not evaluated)."""
        rows = self.per_query[self.per_query.stage == stage]
        if rows.empty:
            return pd.DataFrame(index=pd.Index([], name="query_id", dtype=str))
        table = rows.pivot(index="query_id", columns="measure", values="value")
        names = list(self.metrics.get(stage) or [])
        return table[[n for n in names if n in table.columns]]

    def to_dataframe(self) -> pd.DataFrame:
        """Mean of every measure per stage: one row per (stage, measure)."""
        return pd.DataFrame(
            [
                {"stage": stage, "measure": measure, "mean": value}
                for stage in STAGES
                for measure, value in (self.metrics.get(stage) or {}).items()
            ]
        )

    def has_run(self, stage: str) -> bool:
        return stage in self.runs or (
            self.folder is not None and (self.folder / run_file(stage)).is_file()
        )

    def run(self, stage: str) -> pd.DataFrame:
        """The ``first_stage`` or ``reranked`` run (read from its TREC file on first use)."""
        if stage not in self.runs and self.folder is not None:
            path = self.folder / run_file(stage)
            if path.is_file():
                self.runs[stage] = read_trec_run(path)
        return self.runs[stage]

    def online_latency(self, parts: tuple[str, ...] | None = None) -> Latency:
        """The whole system's online latency (``parts=None``), or the given stages summed
        per query (a reranked run's first stage)."""
        online = self.latency.get("online")
        if not online:
            return Latency()
        if self.config["retriever"].get("kind") in ("run_file", "top_ranked"):
            return self._run_file_latency(online, parts)
        per_query = online.get("per_query_ms") or {}
        if parts is None:
            total = online.get("total") or {}
            return Latency(
                total.get("p50_ms"),
                total.get("p95_ms"),
                total.get("p99_ms"),
                total.get("qps"),
                "measured end to end",
                list(per_query.get("total") or []),
            )
        present = [per_query[p] for p in parts if p in per_query]
        if not present:
            return Latency()
        summed = np.sum(np.asarray(present, dtype=np.float64), axis=0)
        p50, p95, p99 = np.percentile(summed, [50, 95, 99])
        concurrency = (online.get("conditions") or {}).get("concurrency", 1)
        busy = summed.sum() / 1000
        return Latency(
            float(p50),
            float(p95),
            float(p99),
            concurrency * len(summed) / busy if busy else None,
            "first-stage stages of a reranked run",
            summed.tolist(),
        )

    def selective_inputs(self, measure: str):
        """``(never, always, features, costs)`` for :func:`evalkit.selective.curve`: the
        measure per query without and with reranking, the per-query features (first-stage
        score shape and query predictors) and the measured per-query stage costs."""
        from evalkit.selective import Costs, first_stage_features

        never = self.stage_table("first_stage")[measure]
        always = self.stage_table("reranked")[measure]
        features = first_stage_features(self.run("first_stage"))
        if self.query_features is not None:
            features = features.join(self.query_features, how="outer")
        per_query = (self.latency.get("online") or {}).get("per_query_ms") or {}
        first = [per_query[p] for p in FIRST_STAGE_PARTS if p in per_query]
        costs = Costs(
            np.sum(np.asarray(first, dtype=np.float64), axis=0) if first else np.zeros(0),
            np.asarray(per_query.get("rerank") or [], dtype=np.float64),
            int(self.identity.depth or 0),
        )
        return never, always, features, costs

    def _run_file_latency(self, online: dict, parts: tuple[str, ...] | None) -> Latency:
        """A first stage read from a run file was not timed by evalkit: its latency is the
        user's ``retriever.p95_ms`` (added to every query's measured rerank time), or
        unknown — never the file lookup's near-zero time."""
        given = self.config["retriever"].get("p95_ms")
        if given is None:
            return Latency(source="unknown: first stage from a run file (retriever.p95_ms)")
        rerank = (online.get("per_query_ms") or {}).get("rerank") or []
        if parts is not None or not self.reranked or not rerank:
            return Latency(
                given,
                given,
                given,
                1000.0 / given if given else None,
                "given by the user: retriever.p95_ms",
                [given],
            )
        total = np.asarray(rerank, dtype=np.float64) + given
        p50, p95, p99 = np.percentile(total, [50, 95, 99])
        return Latency(
            float(p50),
            float(p95),
            float(p99),
            1000.0 / float(total.mean()),
            "rerank measured + first stage given (retriever.p95_ms, added to every query)",
            total.tolist(),
        )

    def finished_at(self) -> float:
        """When the completion marker was written (0 for a result not saved)."""
        try:
            return (self.folder / COMPLETE).stat().st_mtime if self.folder else 0.0
        except OSError:
            return 0.0

    def hardware(self) -> str:
        hw = self.env.get("hardware", {})
        return hw.get("gpu") or f"{hw.get('cpu', '?')} x{hw.get('cpu_count', '?')}"

    def systems(self) -> list[System]:
        """This run's systems: its first stage, and the two-stage system when it reranked."""
        relevance = int((self.metrics.get("contract") or {}).get("relevance_level", 1))
        first_alone = not self.reranked
        out = [
            System(
                identity=self.identity.first_stage(),
                per_query=self.stage_table("first_stage"),
                latency=self.online_latency(None if first_alone else FIRST_STAGE_PARTS),
                folder=self.folder or Path("."),
                hardware=self.hardware(),
                quality_meaningful=self.config["retriever"].get("weights") != "random",
                relevance_level=relevance,
                measured_alone=first_alone,
            )
        ]
        if self.reranked:
            offline = self.latency.get("offline") or {}
            out.append(
                System(
                    identity=self.identity,
                    per_query=self.stage_table("reranked"),
                    latency=self.online_latency(),
                    folder=self.folder or Path("."),
                    hardware=self.hardware(),
                    quality_meaningful=not self.cost_only,
                    pairs_per_second=offline.get("rerank_pairs_per_second"),
                    pairs_per_second_source=offline.get("rerank_pairs_per_second_source"),
                    usd_per_1k_queries=(self.metrics.get("cost") or {}).get("usd_per_1k_queries"),
                    recall_at_depth=(self.metrics.get("recall_at_depth") or {}).get("value"),
                    relevance_level=relevance,
                    result=self,
                )
            )
        return out

    # --- writing ------------------------------------------------------------------------

    def save(self, folder: str | Path, marker: dict | None = None) -> Path:
        """Write every file atomically, ``complete.json`` last (a killed save leaves a
        folder that is never taken for a finished result)."""
        from omegaconf import OmegaConf

        from evalkit.faults import checkpoint

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / CONFIG, OmegaConf.to_yaml(OmegaConf.create(self.config)))
        retriever = self.config["retriever"]["name"]
        reranker = self.config["reranker"]["name"]
        tags = {
            "first_stage": f"evalkit-{retriever}",
            "reranked": f"evalkit-{retriever}-{reranker}",
        }
        for stage, run in self.runs.items():
            write_trec_run(folder / run_file(stage), run, tags[stage])
        write_parquet(folder / PER_QUERY, self.per_query[PER_QUERY_COLUMNS])
        write_json(folder / LATENCY, self.latency)
        if self.latency.get("depth_curve"):
            from evalkit.plots import write_depth_curve

            write_depth_curve(self.latency["depth_curve"], folder)
        if self.load_curve is not None:
            from evalkit.plots import write_load_curve

            write_json(folder / LOAD, self.load_curve)
            write_load_curve(self.load_curve, folder)
        if self.query_features is not None:
            write_parquet(folder / QUERY_FEATURES, self.query_features.reset_index())
        write_json(folder / ENV, self.env)
        write_json(folder / METRICS, {**self.metrics, "identity": self.identity.to_dict()})
        checkpoint("before_marker")
        self.completion = dict(marker or {})
        write_json(folder / COMPLETE, self.completion)
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RunResult:
        """Read a finished result folder; a clear error names what is missing or broken."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        folder = Path(folder)
        marker = completion(folder)
        if marker is None:
            raise DataError(
                problem(
                    f"{folder} is not a finished run (no readable {COMPLETE})",
                    fix="rerun it (evalkit-run resumes), or delete the folder",
                )
            )
        try:
            config = OmegaConf.to_container(OmegaConf.load(folder / CONFIG))
            metrics = _read_json(folder / METRICS)
            latency = _read_json(folder / LATENCY)
            env = _read_json(folder / ENV)
            per_query = pd.read_parquet(folder / PER_QUERY)
            identity = Identity.from_dict(metrics["identity"])
        except (OSError, ValueError, KeyError, TypeError, OmegaConfBaseException) as error:
            raise DataError(
                problem(
                    f"result folder {folder} is damaged ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''})",
                    fix="rerun it into a fresh folder (or delete complete.json to redo it)",
                )
            ) from None
        missing = [c for c in PER_QUERY_COLUMNS if c not in per_query.columns]
        if missing or not isinstance(metrics.get("first_stage"), dict):
            raise DataError(
                problem(
                    f"result folder {folder} is damaged (per_query.parquet missing {missing}"
                    " or metrics.json without first_stage)",
                    fix="rerun it into a fresh folder",
                )
            )
        per_query = per_query.assign(query_id=per_query["query_id"].astype(str))
        if not np.isfinite(per_query["value"].to_numpy(dtype=np.float64)).all():
            raise DataError(problem(f"{folder / PER_QUERY} holds non-finite values"))
        load_path = folder / LOAD
        features_path = folder / QUERY_FEATURES
        features = None
        if features_path.is_file():
            features = pd.read_parquet(features_path)
            features = features.assign(query_id=features["query_id"].astype(str))
            features = features.set_index("query_id")
        return cls(
            identity=identity,
            config=config,
            metrics=metrics,
            per_query=per_query,
            latency=latency,
            env=env,
            folder=folder,
            load_curve=_read_json(load_path) if load_path.is_file() else None,
            query_features=features,
            completion=marker,
        )


def _read_json(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


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
    for marker in sorted(root.rglob(COMPLETE)):
        try:
            results.append(RunResult.load(marker.parent))
        except DataError as error:
            log.warning("skipping %s: %s", marker.parent, error)
    finished = {r.folder for r in results}
    for metrics in sorted(root.rglob(METRICS)):
        if metrics.parent not in finished and completion(metrics.parent) is None:
            log.warning("skipping unfinished run %s (no %s)", metrics.parent, COMPLETE)
    if not results:
        raise DataError(
            problem(
                f"no finished runs below {root}",
                fix="run evalkit-run (or a sweep with -m) into this folder first",
            )
        )
    return results


def is_number(value) -> bool:
    """A finite real number (not None, not NaN)."""
    return isinstance(value, int | float | np.number) and math.isfinite(float(value))
