"""What a deployment can afford and how sure a gain must be: :class:`Budget`."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from evalkit.errors import ConfigError, problem


def _finite(name: str, value, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(problem(f"{name} must be a finite number, found {value!r}", name))
    if positive and value <= 0:
        raise ConfigError(problem(f"{name} must be positive, found {value!r}", name))
    return float(value)


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What the deployment can afford and how sure a gain must be (keywords only; each
    value is checked where it is declared, named by its command-line flag).

    Example:
        >>> Budget(p95_ms=50, qps=20).qps
        20.0
        >>> Budget(p95_ms=-1)
        Traceback (most recent call last):
        ...
        evalkit.errors.ConfigError: --p95-ms must be positive, found -1 (--p95-ms)
    """

    p95_ms: float
    qps: float | None = None
    metric: str = "nDCG@10"
    min_gain: float = 0.0
    alpha: float = 0.05
    dataset: str | None = None
    selective: bool = False  # also recommend a per-query policy (see analysis.selective)
    max_usd_per_1k: float | None = None  # a priced second stage must cost at most this
    replicas: int | None = None  # with qps: simulate this many replicas from the load curve

    def __post_init__(self) -> None:
        for declared in fields(self):
            check = getattr(self, f"_check_{declared.name}", None)
            value = getattr(self, declared.name)
            if check is not None and value is not None:
                object.__setattr__(self, declared.name, check(value))

    @staticmethod
    def _check_p95_ms(value) -> float:
        return _finite("--p95-ms", value)

    @staticmethod
    def _check_qps(value) -> float:
        return _finite("--qps", value)

    @staticmethod
    def _check_min_gain(value) -> float:
        return _finite("--min-gain", value, positive=False)

    @staticmethod
    def _check_max_usd_per_1k(value) -> float:
        return _finite("--max-usd-per-1k", value, positive=False)

    @staticmethod
    def _check_alpha(value) -> float:
        alpha = _finite("--alpha", value)
        if not alpha < 1:
            raise ConfigError(problem(f"--alpha must be below 1, found {alpha}", "--alpha"))
        return alpha

    def _check_replicas(self, value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
            raise ConfigError(
                problem(
                    f"--replicas must be an integer from 1 to 1024, found {value!r}", "--replicas"
                )
            )
        if self.qps is None:
            raise ConfigError(
                problem("--replicas needs --qps (the load to simulate)", "--replicas")
            )
        return value
