"""Selective reranking: decide per query, before any reranker call, whether to rerank.

Everything here is computed from runs already made — a reranked run folder holds the
first-stage scores (``run.first_stage.trec``), the per-query measure both ways
(``per_query.parquet``), the per-query cost of each stage (``latency.json``) and the
pre-retrieval query features (``query_features.parquet``) — so a cost/quality curve costs
no model call.

* :func:`first_stage_features` — per query: top-1 score, margin between the top two,
  spread (std) and normalised entropy of the top-k scores, drop-off from rank 1 to k.
* Query features (written by the runner): length in terms, mean / max / min IDF.
* Policies: a threshold on one feature (which side reranks is chosen on the training
  folds), and a learned predictor (scikit-learn logistic regression on all features,
  predicting whether reranking helps). Thresholds and models are always fitted on the
  *other* folds of a K-fold split over queries: no query is scored by a policy fitted on
  it.
* :func:`curve` — for each policy and target share of queries reranked, the mean measure
  with a bootstrap CI, the pairs scored per query and the latency it implies; plus the
  reference rows: ``never``, ``always``, ``random`` (the same share, chosen at random:
  the baseline any policy must beat) and ``oracle`` (rerank exactly the queries where it
  helps most: the ceiling).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from evalkit.analysis.stats import bootstrap_ci, compare_paired
from evalkit.rerank.policy import FEATURES, first_stage_features, query_features  # noqa: F401
from evalkit.results.records import Costs

SHARES = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 21))


def folds(queries: Sequence[str], k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number of each query (a seeded shuffle, as even as possible)."""
    order = np.random.default_rng(seed).permutation(len(queries))
    assignment = np.empty(len(queries), dtype=np.int64)
    assignment[order] = np.arange(len(queries)) % k
    return assignment


def threshold_selection(
    feature: np.ndarray, gain: np.ndarray, fold: np.ndarray, share: float
) -> np.ndarray:
    """Which queries to rerank at a target ``share``, one feature, cross-validated.

    For each test fold, the threshold is the ``share`` quantile of the feature on the
    *training* folds, and the side that reranks (low or high values) is the one whose
    selected training queries gained more on average. The test fold's own values and
    gains are never used to choose.
    """
    selected = np.zeros(len(feature), dtype=bool)
    if share <= 0:
        return selected
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        best_gain, best_pick = -np.inf, None
        for side in ("low", "high"):
            q = share if side == "low" else 1 - share
            cut = np.quantile(feature[train], q)
            pick = (lambda x, c=cut: x <= c) if side == "low" else (lambda x, c=cut: x >= c)
            chosen = pick(feature[train])
            mean_gain = gain[train][chosen].sum() / max(train.sum(), 1)
            if mean_gain > best_gain:
                best_gain, best_pick = mean_gain, pick
        selected[test] = best_pick(feature[test])
    return selected


def deploy_threshold(feature: np.ndarray, gain: np.ndarray, share: float) -> tuple[str, float]:
    """The side and threshold to deploy at ``share``, fitted on every evaluated query
    (the curve's quality numbers are cross-validated; this is what a service would run)."""
    best = None
    for side in ("low", "high"):
        cut = float(np.quantile(feature, share if side == "low" else 1 - share))
        chosen = feature <= cut if side == "low" else feature >= cut
        mean_gain = gain[chosen].sum() / max(len(gain), 1)
        if best is None or mean_gain > best[0]:
            best = (mean_gain, side, cut)
    return best[1], best[2]


def learned_scores(features: np.ndarray, gain: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Cross-validated P(reranking helps) per query from a logistic regression (scikit-
    learn) fitted on the other folds; standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros(len(gain))
    helps = (gain > 0).astype(int)
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        if len(np.unique(helps[train])) < 2:
            out[test] = helps[train].mean()
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(features[train], helps[train])
        out[test] = model.predict_proba(features[test])[:, 1]
    return out


def _fit_predict(features: np.ndarray, helps: np.ndarray, train: np.ndarray, test: np.ndarray):
    """P(helps) from a logistic regression fitted on ``train``: ``(on train, on test)``,
    or ``(None, None)`` when the training labels are all one class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(helps[train])) < 2:
        return None, None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features[train], helps[train].astype(int))
    return model.predict_proba(features[train])[:, 1], model.predict_proba(features[test])[:, 1]


def learned_selection(probability: np.ndarray, fold: np.ndarray, share: float) -> np.ndarray:
    """Rerank the test fold's queries whose predicted probability is above the training
    folds' ``1 - share`` quantile (cross-validated, like thresholds)."""
    selected = np.zeros(len(probability), dtype=bool)
    if share <= 0:
        return selected
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        cut = np.quantile(probability[train], 1 - share)
        selected[test] = probability[test] >= cut
    return selected


def _aligned(never: pd.Series, always: pd.Series, features: pd.DataFrame):
    """``(queries, never values, always values, feature table)`` on the common queries."""
    queries = never.index.intersection(always.index)
    base = never.loc[queries].to_numpy(dtype=np.float64)
    full = always.loc[queries].to_numpy(dtype=np.float64)
    return queries, base, full, features.reindex(queries).astype(np.float64).fillna(0.0)


def _point(policy, threshold, selected, share_target, base, full, costs, bootstrap, seed) -> dict:
    """One row of the curve: the measure when ``selected`` queries are reranked."""
    values = np.where(selected, full, base)
    low, high = bootstrap_ci(values, samples=bootstrap, seed=seed)
    share = float(selected.mean()) if len(selected) else 0.0
    mean_ms, p95_ms = costs.implied(share, seed=seed)
    return {
        "policy": policy,
        "threshold": threshold,
        "target_share": share_target,
        "share_reranked": share,
        "pairs_per_query": share * costs.depth,
        "mean": float(values.mean()),
        "ci_low": low,
        "ci_high": high,
        "gain_over_never": float((values - base).mean()),
        "implied_mean_ms": mean_ms,
        "implied_p95_ms": p95_ms,
    }


def curve(
    never: pd.Series,
    always: pd.Series,
    features: pd.DataFrame,
    costs: Costs,
    shares: Sequence[float] = SHARES,
    k: int = 5,
    seed: int = 0,
    bootstrap: int = 1000,
) -> pd.DataFrame:
    """The cost/quality curve of every policy, with the reference rows.

    Args:
        never, always: the measure per query without and with reranking (same index).
        features: per-query features (index ``query_id``), columns from :data:`FEATURES`.
        costs: the run's measured per-query costs.
    """
    queries, base, full, table = _aligned(never, always, features)
    gain = full - base
    fold = folds(list(queries), k, seed)
    rows: list[dict] = []

    def add(policy: str, threshold: str, selected: np.ndarray, share_target: float) -> None:
        rows.append(
            _point(policy, threshold, selected, share_target, base, full, costs, bootstrap, seed)
        )

    n = len(queries)
    add("never", "—", np.zeros(n, dtype=bool), 0.0)
    add("always", "—", np.ones(n, dtype=bool), 1.0)
    rng = np.random.default_rng(seed)
    order = np.argsort(-gain, kind="stable")
    for share in shares:
        if share in (0.0, 1.0):
            continue
        count = round(share * n)
        oracle = np.zeros(n, dtype=bool)
        oracle[order[:count]] = True
        add("oracle", f"top {count} by true gain", oracle, share)
        random_pick = np.zeros(n, dtype=bool)
        random_pick[rng.permutation(n)[:count]] = True
        add("random", f"{count} at random", random_pick, share)
        for name in table.columns:
            picked = threshold_selection(table[name].to_numpy(), gain, fold, share)
            label = f"train-fold cut for {share:.0%}: reranks {picked.mean():.0%}"
            add(f"feature:{name}", label, picked, share)
    probability = learned_scores(table.to_numpy(), gain, fold)
    for share in shares:
        if share in (0.0, 1.0):
            continue
        picked = learned_selection(probability, fold, share)
        add("learned", f"P(helps) cut for {share:.0%}: reranks {picked.mean():.0%}", picked, share)
    return pd.DataFrame(rows)


def _apply(policy: str, share: float, table, gain, train, test) -> np.ndarray:
    """Select test queries with a (policy, share) fitted on the training queries only."""
    n = len(gain)
    picked = np.zeros(n, dtype=bool)
    if policy == "always":
        picked[test] = True
    elif policy == "learned":
        # fitted on the training queries only; the cut is the share's quantile of the
        # training queries' own predictions, applied to the held-out ones as learned
        fitted, held_out = _fit_predict(table.to_numpy(), gain > 0, train, test)
        if fitted is None:  # every training query helped, or none did
            picked[test] = bool((gain[train] > 0).all())
        else:
            picked[test] = held_out >= np.quantile(fitted, 1 - share)
    elif policy.startswith("feature:"):
        values = table[policy.split(":", 1)[1]].to_numpy()
        side, cut = deploy_threshold(values[train], gain[train], share)
        picked[test] = values[test] <= cut if side == "low" else values[test] >= cut
    return picked


def _nested(queries, never, always, features, costs: Costs, p95_ms: float, k: int, seed: int):
    """Nested cross-validation: per outer fold, the (policy, share) chosen on the other
    folds' own curve and fitted on them, applied to the held-out fold. Returns the measure
    per query under those held-out choices, and the choices."""
    _, base, full, table = _aligned(never, always, features)
    gain = full - base
    outer = folds(list(queries), k, seed + 1)
    nested = base.copy()
    choices = []
    for f in range(k):
        train, test = outer != f, outer == f
        inner = curve(
            never.loc[queries[train]],
            always.loc[queries[train]],
            features,
            costs,
            k=k,
            seed=seed,
            bootstrap=100,
        )
        fitting = inner[~inner.policy.isin(["oracle", "random"]) & (inner.implied_p95_ms <= p95_ms)]
        if not len(fitting):
            choices.append("never")
            continue
        choice = fitting.sort_values("mean", ascending=False).iloc[0]
        choices.append(f"{choice.policy}@{choice.target_share:.0%}")
        picked = _apply(choice.policy, choice.target_share, table, gain, train, test)
        nested[test] = np.where(picked[test], full[test], base[test])
    return nested, choices


def _deploy_rule(row, table: pd.DataFrame, gain: np.ndarray) -> str:
    """The setting that runs a chosen point (fitted on every evaluated query)."""
    if not row.policy.startswith("feature:"):
        return "P(helps) from a logistic regression over all features"
    name = row.policy.split(":", 1)[1]
    side, cut = deploy_threshold(table[name].to_numpy(), gain, row.target_share)
    return f"pipeline.policy={name}_{'below' if side == 'low' else 'above'}_{cut:.4g}"


def best_point(
    points: pd.DataFrame,
    never: pd.Series,
    always: pd.Series,
    features: pd.DataFrame,
    costs: Costs,
    p95_ms: float,
    alpha: float = 0.05,
    k: int = 5,
    seed: int = 0,
) -> dict | None:
    """The policy point to deploy within the budget, when the *procedure* of choosing one
    beats both ``never`` (significantly) and ``always``; None otherwise.

    Choosing the best point of a curve measured on the evaluated queries would fit the
    choice to them, so the evidence is a nested cross-validation: for each outer fold,
    the (policy, share) is chosen on the other folds' curve (itself cross-validated) and
    its rule fitted on those folds, then applied to the held-out fold. The paired test
    and the gain are computed on those held-out outcomes; the point to deploy is the best
    one on all queries.
    """
    queries, base, full, table = _aligned(never, always, features)
    gain = full - base
    nested, choices = _nested(queries, never, always, features, costs, p95_ms, k, seed)
    test = compare_paired(base, nested, samples=500)
    always_row = points[points.policy == "always"].iloc[0]
    bar = always_row["mean"] if always_row.implied_p95_ms <= p95_ms else -np.inf
    if not (test.p_randomization < alpha and test.gain > 0 and nested.mean() > bar):
        return None
    candidates = points[
        ~points.policy.isin(["never", "always", "oracle", "random"])
        & (points.implied_p95_ms <= p95_ms)
    ].sort_values("mean", ascending=False)
    if not len(candidates):
        return None
    row = candidates.iloc[0]
    rule = _deploy_rule(row, table, gain)
    return {
        **row.to_dict(),
        "rule": rule,
        "nested_mean": float(nested.mean()),
        "nested_gain_over_never": float(test.gain),
        "nested_gain_ci": [test.gain_ci_low, test.gain_ci_high],
        "p_randomization_vs_never": test.p_randomization,
        "nested_choices": choices,
    }
