"""Per-query selective reranking at run time: the features a policy reads and the policy.

A :class:`Policy` decides, after the first stage and before any reranker call, whether a
query is reranked, from one feature of :func:`first_stage_features` (the score shape of
its first-stage top k) or :func:`query_features` (pre-retrieval predictors). The analysis
of which policy to run (cross-validated curves, nested evidence) is
:mod:`evalkit.analysis.selective`; this module is what a pipeline runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.types import QUERY_ID, SCORE, rank_run

SCORE_FEATURES = ("top1", "margin", "spread", "entropy", "dropoff")
QUERY_FEATURES = ("length", "idf_mean", "idf_max", "idf_min")
FEATURES = SCORE_FEATURES + QUERY_FEATURES
TOP_K = 10


def first_stage_features(run: pd.DataFrame, k: int = TOP_K) -> pd.DataFrame:
    """Score-shape features of each query's first-stage top ``k`` (index ``query_id``).

    Example:
        >>> run = pd.DataFrame({"query_id": ["q", "q", "q"], "doc_id": ["a", "b", "c"],
        ...                     "score": [3.0, 1.0, 1.0]})
        >>> f = first_stage_features(run, k=3).loc["q"]
        >>> float(f.top1), float(f.margin), float(f.dropoff)
        (3.0, 2.0, 2.0)
    """
    ranked = rank_run(run, k=k)
    rows = {}
    for query, group in ranked.groupby(QUERY_ID, sort=True):
        scores = group[SCORE].to_numpy(dtype=np.float64)
        shifted = scores - scores.max()
        weights = np.exp(shifted) / np.exp(shifted).sum()
        entropy = -(weights * np.log(weights + 1e-300)).sum()
        rows[query] = {
            "top1": scores[0],
            "margin": scores[0] - scores[1] if len(scores) > 1 else 0.0,
            "spread": scores.std(),
            "entropy": entropy / math.log(len(scores)) if len(scores) > 1 else 0.0,
            "dropoff": scores[0] - scores[-1],
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(QUERY_ID)


def query_features(queries: pd.DataFrame, corpus_texts: Sequence[str]) -> pd.DataFrame:
    """Pre-retrieval predictors: query length and IDF statistics of its terms.

    Terms are lower-cased alphanumeric runs; IDF is ``log(N / df)`` over the corpus
    (terms absent from the corpus get the IDF of a term seen once).
    """
    import re

    pattern = re.compile(r"[a-z0-9]+")
    terms_of = [set(pattern.findall(str(t).lower())) for t in queries["text"]]
    wanted = set().union(*terms_of) if terms_of else set()
    df = dict.fromkeys(wanted, 0)
    for text in corpus_texts:
        for term in wanted.intersection(pattern.findall(text.lower())):
            df[term] += 1
    n = max(len(corpus_texts), 1)
    rows = {}
    for query, terms in zip(queries[QUERY_ID].astype(str), terms_of, strict=True):
        idf = [math.log(n / max(df[t], 1)) for t in terms] or [0.0]
        rows[query] = {
            "length": float(len(terms)),
            "idf_mean": float(np.mean(idf)),
            "idf_max": float(np.max(idf)),
            "idf_min": float(np.min(idf)),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(QUERY_ID)


@dataclass(frozen=True)
class Policy:
    """A runnable per-query rule: rerank a query only when its feature is at most
    (``FEATURE_below_VALUE``) or at least (``FEATURE_above_VALUE``) a threshold, decided
    after the first stage and before any reranker call. ``FEATURE<=VALUE`` is accepted too
    (quote it on a Hydra command line).

    Example:
        >>> Policy.parse("margin_below_1.7")
        Policy(feature='margin', side='<=', threshold=1.7)
        >>> str(Policy.parse("idf_max>=4.6"))
        'idf_max_above_4.6'
    """

    feature: str
    side: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Policy | None:
        import re

        from evalkit.errors import ConfigError, problem

        if text in ("", "none", None):
            return None
        match = re.fullmatch(
            r"\s*([a-z_0-9]+?)\s*(<=|>=|_below_|_above_)\s*([-+0-9.eE]+)\s*", str(text)
        )
        valid = match is not None and match.group(1) in FEATURES
        if valid:
            try:
                value = float(match.group(3))
            except ValueError:
                valid = False
        if not valid or not math.isfinite(value):
            raise ConfigError(
                problem(
                    f"pipeline.policy={text!r} is not FEATURE_below_VALUE or FEATURE_above_VALUE",
                    "pipeline.policy",
                    f"use one of the features {list(FEATURES)}, e.g. margin_below_1.7, or none",
                )
            )
        side = {"_below_": "<=", "_above_": ">="}.get(match.group(2), match.group(2))
        return cls(match.group(1), side, value)

    def __str__(self) -> str:
        word = "below" if self.side == "<=" else "above"
        return f"{self.feature}_{word}_{self.threshold:g}"

    @property
    def needs_corpus(self) -> bool:
        return self.feature in QUERY_FEATURES

    def select(self, features: pd.DataFrame) -> pd.Series:
        """Per query (the frame's index): whether to rerank it."""
        values = features[self.feature].astype(np.float64)
        return values <= self.threshold if self.side == "<=" else values >= self.threshold
