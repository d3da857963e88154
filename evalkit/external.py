"""Existing TREC runs against qrels, with no corpus: ``evalkit-eval`` / :func:`evaluate_runs`.

Every run is read as trec_eval reads it (:mod:`evalkit.trec`) and scored under the same
contract as a run folder (:mod:`evalkit.measures`: trec_eval's tie order, ``-c``, counts
summed). Each becomes a :class:`~evalkit.results.RunResult` -- a first stage whose identity
is the run file's content -- so ``evalkit.compare``, ``evalkit-report`` and the saved folders
treat it like any run evalkit made (its latency unknown, as for ``retriever=run_file``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from evalkit.cache import digest, file_checksum
from evalkit.errors import DataError, problem
from evalkit.measures import (
    CONTRACT,
    DEFAULT_MEASURES,
    check_computable,
    evaluate,
    parse_measures,
)
from evalkit.results import Identity, RunResult
from evalkit.trec import read_qrels, read_trec_run, refuse_repeated_pairs
from evalkit.types import QUERY_ID


def evaluate_runs(
    runs: Mapping[str, str | Path] | Sequence[str | Path],
    qrels: str | Path,
    metrics: Sequence[str] = DEFAULT_MEASURES,
    relevance_level: int = 1,
    out: str | Path | None = None,
) -> dict[str, RunResult]:
    """Score TREC runs against TREC (or BEIR) qrels, as trec_eval ``-c`` would.

    Args:
        runs: ``{name: run file}``, or run files (named by their file name).
        qrels: ``qid iter docno rel`` lines, or a BEIR ``qrels/<split>.tsv``.
        metrics: ir_measures names (trec_eval's names are read too: ``P_10``, ``map``).
        relevance_level: the lowest grade binary measures count as relevant (trec_eval -l).
        out: when given, each run's folder is saved below it (``out/<name>/``).

    Returns:
        ``{name: RunResult}`` in the order given.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "qrels.txt").write_text("1 0 a 1\\n1 0 b 0\\n2 0 c 1\\n")
        >>> _ = (folder / "es.trec").write_text("1 Q0 b 1 2.0 es\\n1 Q0 a 2 1.0 es\\n")
        >>> result = evaluate_runs([folder / "es.trec"], folder / "qrels.txt", ["RR", "NumQ"])
        >>> result["es"].metrics["first_stage"]  # query 2 retrieved nothing: RR 0, still a query
        {'RR': 0.25, 'NumQ': 2.0}
    """
    named = dict(runs) if isinstance(runs, Mapping) else {_name(p): p for p in runs}
    if not named:
        raise DataError(problem("no run files given", fix="name at least one TREC run file"))
    qrels_path = Path(qrels)
    judgments = read_qrels(qrels_path)
    measures = parse_measures(metrics, relevance_level)
    check_computable(measures, judgments)
    results = {}
    for name, path in named.items():
        result = _evaluate_one(
            str(name), Path(path), qrels_path, judgments, measures, relevance_level
        )
        if out is not None:
            result.save(Path(out) / str(name), {"qrels": str(qrels_path), "run": str(path)})
        results[str(name)] = result
    return results


def _name(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".gz", ".trec", ".txt", ".run"):
        name = name.removesuffix(suffix)
    return name


def _evaluate_one(
    name: str, path: Path, qrels_path: Path, qrels: pd.DataFrame, measures: list, level: int
) -> RunResult:
    run = read_trec_run(path)
    refuse_repeated_pairs(run, str(path))
    evaluation = evaluate(run, qrels, measures)
    judged = set(qrels[QUERY_ID])
    extra = int((~run[QUERY_ID].isin(judged)).groupby(run[QUERY_ID]).any().sum())
    fingerprint = f"run_file|{file_checksum(path)}"
    identity = Identity(
        dataset={
            "name": _name(qrels_path),
            "content": file_checksum(qrels_path),
            "split": qrels_path.name,
            "relevance_level": level,
            "exclude_self": False,
        },
        retriever={"name": name, "kind": "run_file", "fingerprint": fingerprint},
        first_stage_k=None,
        contract=digest(json.dumps(CONTRACT, sort_keys=True)),
    )
    metrics = {
        "first_stage": dict(evaluation.aggregate),
        "dataset": identity.dataset_name,
        "num_queries": evaluation.num_queries,
        "quality_meaningful": True,
        "data_warnings": {"run_queries_not_in_qrels": extra} if extra else {},
        "contract": {**CONTRACT, "relevance_level": level, "first_stage_k": None},
    }
    return RunResult(
        identity=identity,
        config={
            "retriever": {"kind": "run_file", "name": name, "path": str(path), "p95_ms": None},
            "reranker": {"kind": "none", "name": "none"},
            "eval": {"metrics": [str(m) for m in measures]},
        },
        metrics=metrics,
        per_query=evaluation.per_query.assign(stage="first_stage"),
        latency={"offline": {}, "online": None},
        env={"models": {"retriever": fingerprint}},
        runs={"first_stage": run},
    )


def trec_eval_table(result: RunResult, per_query: bool = False) -> str:
    """The result as trec_eval prints it: ``measure <tab> query|all <tab> value``."""
    lines = [f"{'runid':<22}\tall\t{result.identity.name()}"]
    table = result.stage_table("first_stage")
    for measure, value in result.metrics["first_stage"].items():
        count = measure.startswith(("NumQ", "NumRet", "NumRel"))
        if per_query and measure != "NumQ":
            for query, row in table.sort_index().iterrows():
                shown = f"{int(row[measure])}" if count else f"{row[measure]:.4f}"
                lines.append(f"{measure:<22}\t{query}\t{shown}")
        shown = f"{int(value)}" if count else f"{value:.4f}"
        lines.append(f"{measure:<22}\tall\t{shown}")
    return "\n".join(lines)
