"""The result folder, owned by one object: :class:`RunResult` (``save`` / ``load``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.config.registry import RETRIEVERS
from evalkit.errors import DataError, problem
from evalkit.io import write_json, write_parquet, write_text, write_trec_run
from evalkit.trec import read_trec_run
from evalkit.results.identity import Identity
from evalkit.results.layout import (
    COMPLETE,
    CONFIG,
    ENV,
    FIRST_STAGE_PARTS,
    LATENCY,
    LOAD,
    METRICS,
    PER_QUERY,
    PER_QUERY_COLUMNS,
    RESULT_FORMAT,
    QUERY_FEATURES,
    STAGES,
    _read_json,
    check_format,
    completion,
    run_file,
)
from evalkit.results.records import Costs, Latency, SelectiveInputs, System
from evalkit.results.run_records import LoadCurve, RunLatency, RunMetrics

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """One run's results; the only reader and writer of a result folder.

    Example (a folder made by the tests' helper, as ``evalkit-run`` would write it):
        >>> import tempfile
        >>> from tests.fakeruns import make_run
        >>> folder = make_run(Path(tempfile.mkdtemp()), "my-run", [0.2, 0.4], [0.5, 0.4])
        >>> result = RunResult.load(folder)
        >>> result.metrics_record.reranked["nDCG@10"]  # (0.5 + 0.4) / 2
        0.45
        >>> [s.identity.name() for s in result.systems()]
        ['bm25', 'bm25 → ce@100']
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

    def _repr_html_(self) -> str:
        """Notebooks: the run in three lines (stages' first measure, p95, folder)."""
        import html

        record = self.metrics_record
        name, first = next(iter(record.first_stage.items()), ("", float("nan")))
        lines = [f"<b>{html.escape(self.dataset)}</b>: {html.escape(name)} first stage {first:.4f}"]
        if record.reranked and record.quality_meaningful:
            lines[0] += f", reranked {next(iter(record.reranked.values())):.4f}"
        total = (self.latency.get("online") or {}).get("total") or {}
        if total.get("p95_ms") is not None:
            lines.append(f"p95 {total['p95_ms']:,.1f} ms end to end")
        lines.append(f"<code>{html.escape(str(self.folder or '(not saved)'))}</code>")
        return "<br>".join(lines)

    @property
    def load_record(self) -> LoadCurve | None:
        """``load.json`` as a typed record (None without a load test)."""
        return LoadCurve.from_dict(self.load_curve) if self.load_curve else None

    @property
    def metrics_record(self) -> RunMetrics:
        """``metrics.json`` as a typed record."""
        return RunMetrics.from_dict(self.metrics)

    @property
    def latency_record(self) -> RunLatency:
        """``latency.json`` as a typed record."""
        return RunLatency.from_dict(self.latency)

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
        kind = self.config["retriever"].get("kind")
        if kind in RETRIEVERS and not RETRIEVERS.get(kind).timed:
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
                (online.get("rerank_split") or {}).get("not_model_share"),
                (online.get("predicted_all_queries") or {}).get("p95_ms"),
                ((online.get("predicted_all_queries") or {}).get("check") or {}).get("passes"),
            )
        alone = (online.get("first_stage_alone") or {}).get("per_query_ms") or {}
        source = "first stage timed alone in a reranked run"
        if not alone:  # folders from before the first stage was timed alone
            alone, source = per_query, "first-stage stages of a reranked run"
        present = [alone[p] for p in parts if p in alone]
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
            source,
            summed.tolist(),
        )

    def selective_inputs(self, measure: str) -> SelectiveInputs:
        """``(never, always, features, costs)`` for :func:`evalkit.analysis.selective.curve`: the
        measure per query without and with reranking, the per-query features (first-stage
        score shape and query predictors) and the measured per-query stage costs."""
        from evalkit.rerank.policy import first_stage_features

        never = self.stage_table("first_stage")[measure]
        always = self.stage_table("reranked")[measure]
        features = first_stage_features(self.run("first_stage"))
        if self.query_features is not None:
            features = features.join(self.query_features, how="outer")
        online = self.latency.get("online") or {}
        per_query = online.get("per_query_ms") or {}
        alone = (online.get("first_stage_alone") or {}).get("per_query_ms") or per_query
        first = [alone[p] for p in FIRST_STAGE_PARTS if p in alone]
        costs = Costs(
            np.sum(np.asarray(first, dtype=np.float64), axis=0) if first else np.zeros(0),
            np.asarray(per_query.get("rerank") or [], dtype=np.float64),
            int(self.identity.depth or 0),
        )
        return SelectiveInputs(never, always, features, costs)

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
        if self.load_curve is not None:
            write_json(folder / LOAD, self.load_curve)
        if self.query_features is not None:
            write_parquet(folder / QUERY_FEATURES, self.query_features.reset_index())
        write_json(folder / ENV, self.env)
        write_json(
            folder / METRICS,
            {**self.metrics, "format": RESULT_FORMAT, "identity": self.identity.to_dict()},
        )
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
        check_format(folder, metrics)
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
        return cls(
            identity=identity,
            config=config,
            metrics=metrics,
            per_query=per_query,
            latency=latency,
            env=env,
            folder=folder,
            load_curve=_read_json(load_path) if load_path.is_file() else None,
            query_features=_read_features(folder / QUERY_FEATURES),
            completion=marker,
        )


def _read_features(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    features = pd.read_parquet(path)
    return features.assign(query_id=features["query_id"].astype(str)).set_index("query_id")
