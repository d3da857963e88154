"""Typed views of a run's files: what ``metrics.json``, ``latency.json`` and ``load.json``
hold, as dataclasses with ``from_dict`` / ``to_dict``.

Every reader outside :mod:`evalkit.results` goes through these (``RunResult.metrics_record``,
``.latency_record``, ``.load_record``); only this package knows the files' keys. Folders of
format 1 (before ``metrics.json`` carried ``format``) read the same: every field missing
there has a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


def _float(value) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class StageLatency:
    """One stage's online latency (ms) and the closed-loop QPS."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    qps: float | None = None
    p95_ci_ms: tuple[float | None, float | None] = (None, None)

    @classmethod
    def from_dict(cls, data: dict) -> StageLatency:
        ci = data.get("p95_ci_ms") or (None, None)
        return cls(
            *(_float(data.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")),
            qps=_float(data.get("qps")),
            p95_ci_ms=(_float(ci[0]), _float(ci[1])),
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "p95_ci_ms": list(self.p95_ci_ms)}


def _stages(data: dict) -> dict[str, StageLatency]:
    return {
        name: StageLatency.from_dict(value)
        for name, value in data.items()
        if isinstance(value, dict) and "p50_ms" in value
    }


@dataclass(frozen=True)
class OnlineLatency:
    """The closed-loop pass: per stage, each query's times, and the conditions."""

    stages: dict[str, StageLatency]
    per_query_ms: dict[str, list[float]] = field(default_factory=dict, repr=False)
    conditions: dict = field(default_factory=dict)
    mode: str = ""
    rerank_split: dict = field(default_factory=dict)  # tokenize / wait / forward / other

    @property
    def not_model_share(self) -> float | None:
        """The share of the rerank stage's time that was not the model's forward pass."""
        return _float(self.rerank_split.get("not_model_share"))

    @property
    def sample_queries(self) -> int | None:
        return self.conditions.get("sample_queries")

    @property
    def other_processes_cpu_share(self) -> float | None:
        """The CPU share other processes took while this was timed (None: not recorded)."""
        return (self.conditions.get("machine") or {}).get("other_processes_cpu_share")

    @property
    def machine_busy(self) -> bool:
        return bool((self.conditions.get("machine") or {}).get("busy"))

    @classmethod
    def from_dict(cls, data: dict) -> OnlineLatency:
        return cls(
            _stages(data),
            {k: list(v) for k, v in (data.get("per_query_ms") or {}).items()},
            dict(data.get("conditions") or {}),
            str(data.get("mode", "")),
            dict(data.get("rerank_split") or {}),
        )

    def to_dict(self) -> dict:
        return {
            **{name: stage.to_dict() for name, stage in self.stages.items()},
            "per_query_ms": self.per_query_ms,
            "conditions": self.conditions,
            "mode": self.mode,
            **({"rerank_split": self.rerank_split} if self.rerank_split else {}),
        }


@dataclass(frozen=True)
class DepthPoint:
    depth: int
    stages: dict[str, StageLatency]


@dataclass(frozen=True)
class RunLatency:
    """``latency.json``: offline throughput, the online pass, the latency-vs-depth curve."""

    offline: dict = field(default_factory=dict)
    online: OnlineLatency | None = None
    depth_curve: tuple[DepthPoint, ...] = ()

    @property
    def rerank_pairs_per_second(self) -> float | None:
        return _float(self.offline.get("rerank_pairs_per_second"))

    def to_dict(self) -> dict:
        out: dict = {"offline": self.offline, "online": self.online.to_dict() if self.online else None}
        if self.depth_curve:
            out["depth_curve"] = [
                {"depth": p.depth, "stages": {k: v.to_dict() for k, v in p.stages.items()}}
                for p in self.depth_curve
            ]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RunLatency:
        online = data.get("online")
        return cls(
            dict(data.get("offline") or {}),
            OnlineLatency.from_dict(online) if online else None,
            tuple(
                DepthPoint(int(p["depth"]), _stages(p["stages"]))
                for p in data.get("depth_curve") or []
            ),
        )


@dataclass(frozen=True)
class RerankerHealth:
    """Could the reranker tell candidates apart? (:func:`evalkit.rerank.engine.degenerate_stats`)"""

    degenerate: bool = False
    constant_score_fraction: float = 0.0
    queries_with_constant_scores: int = 0
    tie_rate: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RerankerHealth:
        return cls(
            bool(data.get("degenerate")),
            float(data.get("constant_score_fraction") or 0.0),
            int(data.get("queries_with_constant_scores") or 0),
            float(data.get("tie_rate") or 0.0),
        )


@dataclass(frozen=True)
class PolicyUse:
    """A selective policy as a run applied it."""

    rule: str
    queries_reranked: int
    share_reranked: float


@dataclass(frozen=True)
class RunMetrics:
    """``metrics.json`` as a record."""

    dataset: str
    num_queries: int
    first_stage: dict[str, float]
    reranked: dict[str, float] | None = None
    recall_at_depth: tuple[str, float] | None = None
    policy: PolicyUse | None = None
    health: RerankerHealth | None = None
    quality_meaningful: bool = True
    quality_note: str | None = None
    data_warnings: dict[str, int] = field(default_factory=dict)
    usd_per_1k_queries: float | None = None
    contract: dict = field(default_factory=dict)

    @property
    def headline_value(self) -> float:
        """The first asked measure of the last stage (Hydra's sweep return value)."""
        return next(iter((self.reranked or self.first_stage).values()))

    def to_dict(self) -> dict:
        """The ``metrics.json`` fields this record holds, as that file writes them."""
        out: dict = {
            "first_stage": self.first_stage,
            "dataset": self.dataset,
            "num_queries": self.num_queries,
            "quality_meaningful": self.quality_meaningful,
            "data_warnings": self.data_warnings,
            "contract": self.contract,
        }
        if self.reranked is not None:
            out["reranked"] = self.reranked
        if self.recall_at_depth is not None:
            out["recall_at_depth"] = dict(zip(("measure", "value"), self.recall_at_depth))
        if self.policy is not None:
            out["policy"] = asdict(self.policy)
        if self.health is not None:
            out["reranker_health"] = self.health.to_dict()
        if self.quality_note is not None:
            out["quality_note"] = self.quality_note
        if self.usd_per_1k_queries is not None:
            out["cost"] = {"usd_per_1k_queries": self.usd_per_1k_queries}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RunMetrics:
        depth = data.get("recall_at_depth")
        policy = data.get("policy")
        health = data.get("reranker_health")
        return cls(
            dataset=str(data.get("dataset", "")),
            num_queries=int(data.get("num_queries", 0)),
            first_stage={k: float(v) for k, v in data["first_stage"].items()},
            reranked={k: float(v) for k, v in data["reranked"].items()}
            if data.get("reranked") is not None
            else None,
            recall_at_depth=(str(depth["measure"]), float(depth["value"])) if depth else None,
            policy=PolicyUse(
                str(policy["rule"]), int(policy["queries_reranked"]), float(policy["share_reranked"])
            )
            if policy
            else None,
            health=RerankerHealth.from_dict(health) if health else None,
            quality_meaningful=bool(data.get("quality_meaningful", True)),
            quality_note=data.get("quality_note"),
            data_warnings={k: int(v) for k, v in (data.get("data_warnings") or {}).items()},
            usd_per_1k_queries=_float((data.get("cost") or {}).get("usd_per_1k_queries")),
            contract=dict(data.get("contract") or {}),
        )


@dataclass(frozen=True)
class LoadPointRecord:
    """One offered rate of a load curve."""

    offered_qps: float
    p95_ms: float | None
    saturated: bool
    latencies_ms: tuple[float, ...] = ()  # each query's, for the p95's interval at this rate


@dataclass(frozen=True)
class SimulatorCheck:
    """Simulated vs measured p95 at one rate, on one replica."""

    offered_qps: float
    relative_error: float
    within_band: bool | None = None  # measured p95 inside simulated same-length runs' 5-95%


@dataclass(frozen=True)
class LoadCurve:
    """``load.json`` as decide, the summary and the plots read it: the measured points, the
    batching policy, the fitted service model, each query's shape (pairs, tokens), the
    simulated curves per replica count and the simulator's check."""

    points: tuple[LoadPointRecord, ...]
    max_batch_pairs: int
    max_wait_ms: float
    seed: int
    service_model: dict
    query_shapes: tuple[tuple[int, int], ...]
    simulated: dict[int, tuple[LoadPointRecord, ...]] = field(default_factory=dict)
    validation: tuple[SimulatorCheck, ...] = ()
    validation_tolerance: float = 0.0

    def to_dict(self) -> dict:
        """The ``load.json`` fields this record holds."""

        def points(rows) -> list[dict]:
            return [asdict(p) for p in rows]

        return {
            "points": points(self.points),
            "conditions": {
                "max_batch_pairs": self.max_batch_pairs,
                "max_wait_ms": self.max_wait_ms,
                "seed": self.seed,
            },
            "service_model": self.service_model,
            "query_shapes": [list(s) for s in self.query_shapes],
            "simulated": {str(k): points(v) for k, v in self.simulated.items()},
            "validation": [asdict(c) for c in self.validation],
            "validation_tolerance": self.validation_tolerance,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LoadCurve:
        conditions = data["conditions"]
        return cls(
            points=_points(data["points"]),
            max_batch_pairs=int(conditions["max_batch_pairs"]),
            max_wait_ms=float(conditions["max_wait_ms"]),
            seed=int(conditions.get("seed", 0)),
            service_model=dict(data["service_model"]),
            query_shapes=tuple((int(p), int(t)) for p, t in data["query_shapes"]),
            simulated={int(k): _points(v) for k, v in (data.get("simulated") or {}).items()},
            validation=tuple(
                SimulatorCheck(
                    float(c["offered_qps"]), float(c["relative_error"]), c.get("within_band")
                )
                for c in data.get("validation") or []
            ),
            validation_tolerance=float(data.get("validation_tolerance", 0.0)),
        )


def _points(rows: list[dict]) -> tuple[LoadPointRecord, ...]:
    return tuple(
        LoadPointRecord(
            float(p["offered_qps"]),
            _float(p.get("p95_ms")),
            bool(p["saturated"]),
            tuple(float(x) for x in p.get("latencies_ms") or ()),
        )
        for p in sorted(rows, key=lambda p: p["offered_qps"])
    )
