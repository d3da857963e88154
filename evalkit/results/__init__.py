"""The result folder, owned by one object: :class:`RunResult` (``save`` / ``load``).

Nothing else in evalkit knows the file names. The runner returns a ``RunResult``;
report, decide, the summary, the CLI and the Python API read result folders only through
:meth:`RunResult.load` / :func:`find_results`.

A system's identity is data, not a name: :class:`Identity` holds everything that changes
its numbers (dataset content and split, retriever settings and model fingerprint, reranker
settings and model fingerprint, depth, first-stage k, evaluation contract). Two folders
with the same identity are the same system (a rerun); two identities are never merged.

Folder layout (the contract; README.md's table of result files says the same):

==========================  ==========================================================
``config.yaml``             the fully resolved configuration
``metrics.json``            ``first_stage`` / ``reranked`` measures, ``num_queries``,
                            ``contract``, ``identity``, recall at depth, health, warnings
``per_query.parquet``       one row per (stage, query_id, measure)
``run.<stage>.trec``        TREC run files
``latency.json``            online and offline latency with their conditions
``env.json``                versions, hardware, model fingerprints, git commit
``complete.json``           written last: the resume key and code version
==========================  =========================================================="""

from evalkit.results.identity import Identity
from evalkit.results.layout import COMPLETE, RESULT_FILES, completion, remove_results, run_file
from evalkit.results.records import Latency, System, is_number
from evalkit.results.finding import find_results
from evalkit.results.run_result import RunResult

__all__ = [
    "COMPLETE",
    "RESULT_FILES",
    "Identity",
    "Latency",
    "RunResult",
    "System",
    "completion",
    "find_results",
    "is_number",
    "remove_results",
    "run_file",
]
