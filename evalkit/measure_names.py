"""Measure names as users type them -> ir_measures' canonical names (trec_eval's names,
any letter case)."""

from __future__ import annotations

import logging

import ir_measures

log = logging.getLogger(__name__)


# trec_eval's measure names -> ir_measures' (the ones with an exact counterpart)
TREC_EVAL_NAMES = {
    "num_q": "NumQ",
    "num_ret": "NumRet",
    "num_rel": "NumRel",
    "num_rel_ret": "NumRelRet",
    "map": "AP",
    "Rprec": "Rprec",
    "bpref": "Bpref",
    "recip_rank": "RR",
    "ndcg": "nDCG",
    "infAP": "infAP",
    "set_P": "SetP",
    "set_recall": "SetR",
    "set_F": "SetF",
    "set_map": "SetAP",
    "set_relative_P": "SetRelP",
}
TREC_EVAL_FAMILIES = (
    ("map_cut_", "AP@"),
    ("ndcg_cut_", "nDCG@"),
    ("P_", "P@"),
    ("recall_", "R@"),
    ("success_", "Success@"),
    ("iprec_at_recall_", "IPrec@"),
)

# the cutoffs trec_eval computes when ``-m`` names a family without any (``-m P``)
_LONG_CUTOFFS = "5,10,15,20,30,100,200,500,1000"
TREC_EVAL_DEFAULT_CUTOFFS = {
    "P": _LONG_CUTOFFS,
    "recall": _LONG_CUTOFFS,
    "map_cut": _LONG_CUTOFFS,
    "ndcg_cut": _LONG_CUTOFFS,
    "success": "1,5,10",
    "iprec_at_recall": ",".join(f"{i / 10:.2f}" for i in range(11)),
}


def expand_trec_eval_option(typed: str) -> list[str]:
    """A trec_eval ``-m`` value as the measures it names: ``P.5,10`` is P_5 and P_10, a
    bare family (``P``) its default cutoffs; anything else is one measure, unchanged.

    Example:
        >>> expand_trec_eval_option("P.5,10"), expand_trec_eval_option("success")
        (['P_5', 'P_10'], ['success_1', 'success_5', 'success_10'])
        >>> expand_trec_eval_option("nDCG@10"), expand_trec_eval_option("ndcg")
        (['nDCG@10'], ['ndcg'])
    """
    family, dot, cutoffs = typed.strip().partition(".")
    if family not in TREC_EVAL_DEFAULT_CUTOFFS or (dot and not cutoffs):
        return [typed]
    chosen = cutoffs if dot else TREC_EVAL_DEFAULT_CUTOFFS[family]
    return [f"{family}_{cutoff}" for cutoff in chosen.split(",")]


def from_trec_eval(name: str) -> str | None:
    """The ir_measures name of a trec_eval measure name, or None.

    Example:
        >>> from_trec_eval("ndcg_cut_10"), from_trec_eval("P_5"), from_trec_eval("gm_map")
        ('nDCG@10', 'P@5', None)
    """
    if name in TREC_EVAL_NAMES:
        return TREC_EVAL_NAMES[name]
    for prefix, family in TREC_EVAL_FAMILIES:
        if name.startswith(prefix) and name[len(prefix) :].replace(".", "", 1).isdigit():
            return family + name[len(prefix) :]
    return None


def canonical_name(name: str) -> str:
    """The ir_measures name of what a user typed: trec_eval's names (``ndcg_cut_10``,
    ``P_10``) and any letter case (``ndcg@10``, ``mrr@10``) map to the canonical one (the
    mapping is logged once); a name nothing matches comes back unchanged.

    Example:
        >>> canonical_name("ndcg@10"), canonical_name("P_10"), canonical_name("mrr@10")
        ('nDCG@10', 'P@10', 'RR@10')
    """
    typed = str(name).strip()
    mapped = from_trec_eval(typed)
    if mapped is None:
        try:
            ir_measures.parse_measure(typed)
            return typed  # already an ir_measures name: as typed (its parameters kept)
        except Exception:
            mapped = _case_insensitive(typed)
    if mapped is None:
        return typed
    if mapped != typed and typed not in _SAID:
        _SAID.add(typed)
        log.info("measure '%s' read as %s", typed, mapped)
    return mapped


_SAID: set[str] = set()


def _case_insensitive(name: str) -> str | None:
    cut = min((i for i in (name.find("@"), name.find("(")) if i > 0), default=len(name))
    family = {k.lower(): k for k in ir_measures.measures.registry}.get(name[:cut].lower())
    if family is None:
        return None
    try:
        return str(ir_measures.parse_measure(family + name[cut:]))
    except Exception:
        return None
