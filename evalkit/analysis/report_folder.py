"""``evalkit-report``: the report folder for the runs below a folder, answer first.

The verdict comes from a budget given on the command line (a fresh decision) or from the
folder's ``decision.json`` (what ``evalkit-decide`` wrote), which is checked against the
report's dataset and measure before it is shown.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from evalkit.analysis.budget import Budget
from evalkit.analysis.decision import decide
from evalkit.analysis.report import Report, compare
from evalkit.analysis.stats import BOOTSTRAP_SAMPLES
from evalkit.measure_names import canonical_name

log = logging.getLogger(__name__)


def build_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    baseline: str = "auto",
    metric: str = "nDCG@10",
    bootstrap: int = BOOTSTRAP_SAMPLES,
    budget: Budget | None = None,
) -> Path:
    """``evalkit-report``: compare the runs below ``results_dir`` and write the report,
    opening with the decision under ``budget`` when one is given, else with the folder's
    ``decision.json`` when it has one that matches."""
    results_dir = Path(results_dir)
    report = compare(results_dir, metric, baseline, bootstrap)
    if budget is not None:
        verdict = decide(report, budget).to_json()
        verdict["source"] = "decided now, for the budget given to evalkit-report"
        report.verdict = verdict
    else:
        report.verdict = _matching(saved_verdict(results_dir), report)
    out = Path(out_dir) if out_dir else results_dir / "report"
    return report.save(out, title=f"evalkit report: {results_dir}")


def saved_verdict(results_dir: Path) -> dict | None:
    """``decision.json`` of a folder (what ``evalkit-decide`` wrote), or None."""
    path = results_dir / "decision.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("%s is unreadable (%s): the report opens without a verdict", path, error)
        return None
    if not isinstance(data, dict) or "message" not in data:
        return None
    data.setdefault("source", f"from {path.name}, written by evalkit-decide")
    return data


def _matching(verdict: dict | None, report: Report) -> dict | None:
    """A saved decision only when it is about these runs' dataset and headline measure."""
    if verdict is None:
        return None
    datasets = {s.dataset for s in report.systems}
    metric = (verdict.get("budget") or {}).get("metric")
    same = metric is None or canonical_name(metric) == canonical_name(report.metric)
    if verdict.get("dataset") not in datasets or not same:
        log.warning(
            "decision.json is about %s / %s, this report about %s / %s: not shown "
            "(run evalkit-decide again, or pass --p95-ms to evalkit-report)",
            verdict.get("dataset"),
            metric,
            ", ".join(sorted(datasets)),
            report.metric,
        )
        return None
    return verdict
