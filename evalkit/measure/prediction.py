"""A checked prediction of the p95 over *all* queries, for what is too slow to time fully.

A query's rerank time is driven by its pairs and their token lengths. The service-time
model the load test uses (:class:`~evalkit.measure.simulate.ServiceModel`) is fitted on the
timed queries (one query per record: its pairs, its tokens, its measured rerank ms); each
query of the whole set is then predicted from its own shape, with the timed queries'
measured/fitted ratios as its noise and the timed first-stage times added. The prediction is
labelled as one and carries its check: the same prediction restricted to the timed queries
against their measured p95 (within :data:`~evalkit.measure.simulate.VALIDATION_TOLERANCE`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.measure.load import BatchRecord
from evalkit.measure.simulate import VALIDATION_TOLERANCE, ServiceModel

FEWEST_TIMED = 5  # below this, no model is fitted (four coefficients)


def predict_p95(
    per_query: pd.DataFrame, sample: list, shapes: dict[str, tuple[int, int]], all_ids: list[str]
) -> dict | None:
    """The predicted end-to-end p95 over ``all_ids`` and its check on the timed queries.

    Args:
        per_query: the online pass's ``query`` (index into ``sample``), ``stage``, ``ms``.
        sample: the timed sample's ``(query_id, text)`` pairs.
        shapes: ``query_id -> (pairs, tokens)`` the second stage receives.
        all_ids: every query of the evaluation.

    Returns None when there is no rerank stage or fewer than :data:`FEWEST_TIMED` queries
    were timed.

    Example:
        >>> cost = {i: 10.0 * (i + 1) for i in range(6)}  # rerank ms = one per pair
        >>> stages = lambda i: (("first_stage", 1.0), ("rerank", cost[i]), ("total", 1 + cost[i]))
        >>> rows = [(i, s, ms) for i in range(6) for s, ms in stages(i)]
        >>> frame = pd.DataFrame(rows, columns=["query", "stage", "ms"])
        >>> sample = [(str(i), "") for i in range(6)]
        >>> shapes = {str(i): (10 * (i + 1), 100 * (i + 1)) for i in range(12)}
        >>> out = predict_p95(frame, sample, shapes, [str(i) for i in range(12)])
        >>> round(out["check"]["relative_error"], 3), out["check"]["passes"]  # the timed six
        (0.043, True)
        >>> round(out["p95_ms"])  # the untimed 6..11 reach 120 pairs: 120 ms + 1 ms
        121
    """
    wide = per_query.pivot_table(index="query", columns="stage", values="ms", aggfunc="first")
    if "rerank" not in wide or len(wide) < FEWEST_TIMED:
        return None
    timed_ids = [str(sample[int(i)][0]) for i in wide.index]
    records = [
        BatchRecord(1, *shapes.get(q, (0, 0)), float(ms))
        for q, ms in zip(timed_ids, wide["rerank"], strict=True)
    ]
    model = ServiceModel.fit(records)
    ratios = np.asarray(model.ratios)
    first = wide["first_stage"].to_numpy() if "first_stage" in wide else np.zeros(len(wide))

    def p95_over(ids: list[str]) -> float:
        means = np.array([_rerank_mean(model, shapes.get(q)) for q in ids])
        # every query's mean cost times every measured ratio, plus a timed first stage
        draws = means[:, None] * ratios[None, :] + first[np.arange(len(ratios)) % len(first)]
        return float(np.percentile(draws, 95))

    measured = float(np.percentile(wide["total"], 95)) if "total" in wide else None
    return {
        "p95_ms": p95_over([str(q) for q in all_ids]),
        "queries": len(all_ids),
        "label": "prediction: service-time model fitted on the timed queries, "
        "applied to every query's own pairs and tokens",
        "model": model.to_dict(),
        "check": _check(p95_over(timed_ids), measured, len(timed_ids)),
    }


def _check(predicted: float, measured: float | None, timed: int) -> dict:
    """The prediction on the timed queries against their measured p95."""
    error = abs(predicted - measured) / measured if measured else None
    return {
        "predicted_p95_on_timed_ms": predicted,
        "measured_p95_on_timed_ms": measured,
        "relative_error": error,
        "tolerance": VALIDATION_TOLERANCE,
        "passes": error is not None and error <= VALIDATION_TOLERANCE,
        "timed_queries": timed,
    }


def _rerank_mean(model: ServiceModel, shape: tuple[int, int] | None) -> float:
    """A query without pairs (kept unreranked, or no candidates) costs no rerank time."""
    if not shape or not shape[0]:
        return 0.0
    return model.mean_ms(1, *shape)
