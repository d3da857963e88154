"""Every query one click away: ``queries.html``, a static page that works offline.

For each reranked system against its own first stage: the queries sorted by gain with
their texts; opening one shows the first-stage and the reranked top 10 side by side with
document titles, relevance labels, rank moves and scores; a filter shows the queries
reranking hurt. The data is compact JSON in the page, rendered on demand by a few lines of
script (thousands of queries stay fast: only the opened query's rows are built).

Texts and labels come from the run's dataset when it is on this machine (``dataset=local``
or a shipped collection); otherwise the page shows ids and says why.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import pandas as pd

from evalkit.io import write_text
from evalkit.results import System
from evalkit.types import DOC_ID, QUERY_ID, RANK, SCORE, rank_run

log = logging.getLogger(__name__)

TOP = 10


def dataset_of(system: System):
    """The run's dataset when it can be read here without a download, else None."""
    from evalkit.data import load_beir_folder
    from evalkit.data.sources import builtin_path

    config = (system.result.config if system.result is not None else {}).get("dataset") or {}
    source, path = config.get("source"), config.get("path")
    try:
        if source == "local" and path:
            folder = Path(path).expanduser()
        elif source == "builtin":
            folder = builtin_path(config.get("name"))
        else:
            return None
        return load_beir_folder(
            folder, config.get("split", "test"), relevance_level=config.get("relevance_level", 1)
        )
    except Exception as error:  # the page still shows ids; the report must not fail here
        log.info("per-query view without texts for %s: %s", system.folder, error)
        return None


def _top(run: pd.DataFrame, k: int) -> dict[str, list]:
    ranked = rank_run(run)
    ranked = ranked[ranked[RANK] <= k]
    return {
        str(q): list(zip(g[DOC_ID].astype(str), g[SCORE].astype(float), strict=True))
        for q, g in ranked.groupby(QUERY_ID, sort=False)
    }


def system_view(system: System, label: str, measure: str, dataset) -> dict | None:
    """One reranked system's queries (sorted by gain) and their top 10s."""
    result = system.result
    if result is None or not system.reranked:
        return None
    never = result.stage_table("first_stage")[measure]
    always = result.stage_table("reranked")[measure]
    gains = (always - never).dropna().sort_values()
    try:
        first_run, reranked_run = result.run("first_stage"), result.run("reranked")
    except KeyError:  # a folder without its run files: nothing to open
        return None
    first_rank = {
        (str(q), str(d)): int(r)
        for q, d, r in rank_run(first_run)[[QUERY_ID, DOC_ID, RANK]].itertuples(index=False)
    }
    first_top, reranked_top = _top(first_run, TOP), _top(reranked_run, TOP)
    texts = (
        {}
        if dataset is None
        else dict(zip(dataset.queries[QUERY_ID], dataset.queries.text, strict=True))
    )
    queries = []
    for query_id, gain in gains.items():
        q = str(query_id)
        queries.append(
            {
                "id": q,
                "text": texts.get(q, ""),
                "gain": round(float(gain), 6),
                "before": round(float(never[query_id]), 6),
                "after": round(float(always[query_id]), 6),
                "first": [[d, round(s, 4)] for d, s in first_top.get(q, [])],
                "reranked": [
                    [d, round(s, 4), first_rank.get((q, d))] for d, s in reranked_top.get(q, [])
                ],
            }
        )
    return {"system": label, "measure": measure, "queries": queries}


def _labels(dataset, views: list[dict]) -> tuple[dict, dict]:
    """Titles of the documents shown and their relevance labels (only those)."""
    if dataset is None:
        return {}, {}
    shown = {
        (query["id"], row[0])
        for view in views
        for query in view["queries"]
        for row in query["first"] + query["reranked"]
    }
    docs = {d for _, d in shown}
    corpus = dataset.corpus[dataset.corpus[DOC_ID].astype(str).isin(docs)]
    titles = {
        str(d): (str(t) if str(t).strip() else str(x)[:90])
        for d, t, x in zip(corpus[DOC_ID], corpus.title, corpus.text, strict=True)
    }
    labels: dict[str, dict[str, int]] = {}
    for q, d, r in dataset.qrels[["query_id", "doc_id", "relevance"]].itertuples(index=False):
        if (str(q), str(d)) in shown:
            labels.setdefault(str(q), {})[str(d)] = int(r)
    return titles, labels


def write_query_view(systems: list[System], labels: dict, metric_for, out: Path) -> Path | None:
    """``out/queries.html`` for the reranked systems (None when there are none)."""
    views, datasets, notes = [], {}, []
    for system in systems:
        if not system.reranked or not system.quality_meaningful or system.result is None:
            continue
        if system.dataset not in datasets:
            datasets[system.dataset] = dataset_of(system)
        view = system_view(
            system, labels[system.key], metric_for(system.dataset), datasets[system.dataset]
        )
        if view is not None:
            view["dataset"] = system.dataset
            views.append(view)
    if not views:
        return None
    titles, relevance = {}, {}
    for name, dataset in datasets.items():
        if dataset is None:
            notes.append(f"{name}: texts and labels not shown (the dataset is not local here)")
            continue
        t, r = _labels(dataset, [v for v in views if v["dataset"] == name])
        titles.update(t)
        for q, docs in r.items():
            relevance.setdefault(f"{name}\t{q}", {}).update(docs)
    data = {"views": views, "titles": titles, "labels": relevance, "notes": notes}
    path = out / "queries.html"
    write_text(path, _page(data))
    return path


def _page(data: dict) -> str:
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = (Path(__file__).parent / "templates" / "queries.html").read_text(encoding="utf-8")
    return page.replace("__DATA__", payload).replace(
        "__TITLE__", html.escape("evalkit: every query")
    )
