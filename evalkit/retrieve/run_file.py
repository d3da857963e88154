"""First stage from a TREC run file: evaluate and rerank any engine's candidates.

``retriever=run_file retriever.path=RUN`` reads the run as trec_eval does
(:func:`evalkit.trec.read_trec_run`: errors name file and line), refuses a (query,
document) pair listed twice, and evaluates the run as given: every retrieved document
counts, whether or not the corpus has its text (a run over a larger collection scores as
trec_eval scores it; the reranker skips what it cannot read, see
:func:`evalkit.rerank.base.head_pairs`). The run is kept whole unless
``pipeline.first_stage_k`` is set, and a cut is said. Documents without text and queries
missing from the dataset are counted in ``metrics.json`` → ``data_warnings``. Ties are
resolved by the evaluation rule like every other run. The engine's latency is not known to
evalkit: report and decide say so unless the user gives it (``retriever.p95_ms``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from evalkit.errors import DataError, problem
from evalkit.trec import read_trec_run, refuse_repeated_pairs
from evalkit.types import DOC_ID, QUERY_ID, empty_run, rank_run

log = logging.getLogger(__name__)


class RunFileRetriever:
    """Serves a precomputed run as a first stage.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "bm25.trec"
        >>> _ = path.write_text("q1 Q0 d2 1 9.5 es\\nq1 Q0 d1 2 7.0 es\\n")
        >>> retriever = RunFileRetriever(path)
        >>> retriever.index(pd.DataFrame({"doc_id": ["d1", "d2"], "title": "", "text": ""}))
        >>> retriever.search(pd.DataFrame({"query_id": ["q1"], "text": ["?"]}), 1).doc_id.tolist()
        ['d2']
    """

    name = "run_file"
    device = None

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataError(
                problem(
                    f"run file does not exist: {self.path}",
                    "retriever.path",
                    "point retriever.path at a TREC run file (qid Q0 docid rank score tag)",
                )
            )
        from evalkit.cache import file_checksum

        self.fingerprint = f"run_file|{file_checksum(self.path)}"
        self._run: pd.DataFrame | None = None
        self._by_query: dict[str, pd.DataFrame] = {}
        self.warnings: dict[str, int] = {}
        self._cut: dict[str, int] = {}
        self._said_cut = False

    def index(self, corpus: pd.DataFrame) -> None:
        run = read_trec_run(self.path)
        if run.empty:
            raise DataError(problem(f"run file {self.path} holds no lines", "retriever.path"))
        refuse_repeated_pairs(run, str(self.path))
        unknown = ~run[DOC_ID].isin(set(corpus[DOC_ID].astype(str)))
        if unknown.any():
            self.warnings["run_file_documents_without_text"] = int(unknown.sum())
            log.warning(
                "%s: %d lines name documents the corpus has no text for (e.g. %s); they count "
                "as retrieved, and a reranker keeps them at their place below its head",
                self.path,
                int(unknown.sum()),
                list(run.loc[unknown, DOC_ID].unique()[:3]),
            )
        self._run = run
        # one frame per query: an online search looks one query up, not the whole file
        self._by_query = {str(q): group for q, group in self._run.groupby(QUERY_ID, sort=False)}

    def _note_cut(self, rows: pd.DataFrame, kept: pd.DataFrame, k: int) -> None:
        """Count the lines ``k`` cuts, per query (a query searched again counts once), and
        say it once."""
        cut = rows.groupby(QUERY_ID).size().sub(kept.groupby(QUERY_ID).size(), fill_value=0)
        self._cut.update({str(q): int(n) for q, n in cut.items() if n})
        total = sum(self._cut.values())
        self.warnings["run_file_lines_cut_at_first_stage_k"] = total
        if not self._said_cut:
            self._said_cut = True
            log.warning(
                "%s: pipeline.first_stage_k=%d cut %d of the run's %d lines",
                self.path,
                k,
                total,
                len(rows),
            )

    def search(self, queries: pd.DataFrame, k: int | None) -> pd.DataFrame:
        """The run's candidates of ``queries``: all of them, or the top ``k`` (the lines cut
        are counted and said)."""
        if self._run is None:
            raise RuntimeError("index() must be called before search()")
        wanted = set(queries[QUERY_ID].astype(str))
        known = self._by_query.keys()
        missing = len(wanted - known)
        if missing:
            self.warnings["run_file_queries_without_candidates"] = missing
        extra = len(known - wanted)
        if extra:
            self.warnings["run_file_queries_not_in_dataset"] = extra
        found = [self._by_query[q] for q in wanted if q in self._by_query]
        if not found:
            return empty_run()
        rows = pd.concat(found, ignore_index=True) if len(found) > 1 else found[0]
        ranked = rank_run(rows, k=k).drop(columns="rank")
        if len(ranked) < len(rows):
            self._note_cut(rows, ranked, k)
        return ranked
