"""evalkit against trec_eval 10.0's own test suite (tests/data/trec_eval, see its README).

For every measure trec_eval prints that has an ir_measures counterpart, evalkit's value per
query and over all queries equals the expected output (printed to 4 decimals: within half a
unit of the last digit; counts exactly), through the same path users take
(:func:`evalkit.external.evaluate_runs`, the run read as trec_eval reads it). The two
documented differences are asserted as differences (docs/reliability.md says why).
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.external import evaluate_runs
from evalkit.measures import from_trec_eval

DATA = Path(__file__).parent / "data" / "trec_eval"
# (qrels, run, expected output, trec_eval -l): trec_eval -m all_trec -q [-c] [-l2]
SUITE = [
    ("qrels.test", "results.test", "out.test.aq", 1),
    ("qrels.test", "results.trunc", "out.test.aqc", 1),  # -c: query 302 has no run lines
    ("qrels.rel_level", "results.test", "out.test.aql", 2),
]
# documented: trec_eval 10.0 rounds the recall cutoff of iprec_at_recall differently from
# pytrec_eval's trec_eval (which ir_measures runs); see docs/reliability.md
DIFFERENT = {"iprec_at_recall"}


def expected(name: str) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for line in (DATA / name).read_text().splitlines():
        measure, query, value = line.split("\t")
        table[measure.strip()][query] = value.strip()
    return table


def compared(want: dict) -> dict[str, str]:
    return {
        name: from_trec_eval(name)
        for name in want
        if from_trec_eval(name) and not name.startswith(tuple(DIFFERENT))
    }


@pytest.fixture(scope="module", params=SUITE, ids=[s[2] for s in SUITE])
def case(request):
    qrels, run, out, level = request.param
    want = expected(out)
    names = compared(want)
    [result] = evaluate_runs([DATA / run], DATA / qrels, list(names.values()), level).values()
    return want, names, result


def test_the_suite_covers_every_measure_with_a_counterpart(case):
    _, names, _ = case
    # 54 of trec_eval's all_trec measures have an exact ir_measures counterpart (the IPrec
    # ones, 11 more, are the documented difference below)
    assert len(names) == 54
    assert {"num_q", "num_ret", "num_rel", "num_rel_ret", "map", "ndcg", "bpref"} <= set(names)


def test_every_measure_equals_trec_eval_per_query_and_overall(case):
    want, names, result = case
    table = result.stage_table("first_stage")
    shown = dict(zip(names, result.metrics["first_stage"], strict=True))  # trec name -> column
    wrong = []
    for trec_name, column in shown.items():
        count = trec_name.startswith("num_")
        for query, text in want[trec_name].items():
            got = (
                result.metrics["first_stage"][column]
                if query == "all"
                else table.loc[query, column]
            )
            ok = got == int(text) if count else abs(got - float(text)) <= 5e-5 + 1e-12
            if not ok:
                wrong.append((trec_name, query, text, got))
    assert wrong == []


def test_ties_are_broken_as_trec_eval_breaks_them(tmp_path):
    """Tied scores: trec_eval orders by docno descending, so 'b' ranks above 'a'."""
    (tmp_path / "q").write_text("1 0 a 1\n1 0 b 0\n")
    (tmp_path / "run").write_text("1 Q0 a 1 5.0 x\n1 Q0 b 2 5.0 x\n")
    [result] = evaluate_runs([tmp_path / "run"], tmp_path / "q", ["RR", "P@1"]).values()
    assert result.metrics["first_stage"] == {"RR": 0.5, "P@1": 0.0}


def test_fields_are_split_where_trec_eval_splits_them():
    """trec_eval separates fields with C's isspace(); str.split() also splits on the
    characters NOT_C_SPACE matches (no-break space, separator controls...), and on nothing
    else that the fast path would miss."""
    from evalkit.trec import NOT_C_SPACE

    c_space = set(" \t\n\r\v\f")
    python_only = {chr(c) for c in range(0x110000) if chr(c).isspace()} - c_space
    assert {c for c in map(chr, range(0x110000)) if NOT_C_SPACE.fullmatch(c)} == python_only


def test_a_docno_with_a_no_break_space_scores_as_trec_eval_scores_it(tmp_path):
    """Checked against trec_eval 10.0-rc3 built from usnistgov/trec_eval: a no-break space
    and a unit separator inside docnos are part of them; its output for these files is
    P_1 1.0000, P_2 0.5000, P_3 0.6667, recip_rank 1.0000, num_rel 2, num_rel_ret 2.
    Before, evalkit split the qrels line into five fields and refused it."""
    (tmp_path / "q").write_text("1 0 d\u00a0x 1\n1 0 d 0\n1 0 f\x1fg 1\n1 0 e 0\n")
    (tmp_path / "run").write_text(
        "1 Q0 d\u00a0x 1 3.0 r\n1 Q0 e 2 2.0 r\n1 Q0 f\x1fg 3 1.0 r\n1 Q0 d 4 0.5 r\n"
    )
    measures = ["P@1", "P@2", "P@3", "RR", "NumRel", "NumRelRet"]
    [result] = evaluate_runs([tmp_path / "run"], tmp_path / "q", measures).values()
    got = result.metrics["first_stage"]
    assert got == pytest.approx(
        {"P@1": 1.0, "P@2": 0.5, "P@3": 2 / 3, "RR": 1.0, "NumRel": 2, "NumRet(rel=1)": 2}
    )


def test_iprec_is_pytrec_evals_a_documented_difference_from_trec_eval_10():
    """IPrec@0.1 on query 301: trec_eval 10.0 prints 0.2098, evalkit (ir_measures through
    pytrec_eval) 0.2096 -- the recall cutoff is rounded differently since Dec 2023."""
    want = expected("out.test.aq")
    [result] = evaluate_runs([DATA / "results.test"], DATA / "qrels.test", ["IPrec@0.1"]).values()
    got = result.stage_table("first_stage").loc["301", "IPrec@0.1"]
    assert want["iprec_at_recall_0.10"]["301"] == "0.2098"
    assert abs(got - 0.209607) < 1e-6


def test_judged_is_not_trec_evals_unjudged(tmp_path):
    """Judged@5 divides by the documents retrieved when fewer than 5; trec_eval's unj_5
    always divides by 5, and counts a grade of -1 as unjudged (Judged counts it judged)."""
    (tmp_path / "q").write_text("1 0 a 1\n1 0 c -1\n")
    (tmp_path / "run").write_text("1 Q0 a 1 3.0 x\n1 Q0 b 2 2.0 x\n1 Q0 c 3 1.0 x\n")
    [result] = evaluate_runs([tmp_path / "run"], tmp_path / "q", ["Judged@5"]).values()
    # a, c judged (c's -1 counts), b not: 2 of 3 retrieved; trec_eval unj_5 = 2/5 (b and c)
    assert result.metrics["first_stage"]["Judged@5"] == pytest.approx(2 / 3)
    assert pytest.approx(2 / 3) != 1 - 2 / 5


def test_evalkit_eval_prints_what_trec_eval_prints():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from evalkit.cli import eval_main; eval_main()",
            str(DATA / "results.trunc"),
            "--qrels",
            str(DATA / "qrels.test"),
            "-m",
            "map",
            "-m",
            "num_rel",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    rows = {(m.strip(), q): v for m, q, v in lines}
    assert rows[("AP", "all")] == "0.1016"  # trec_eval -c: map all 0.1016
    assert rows[("NumRel", "302")] == "77"  # a query with no run lines keeps its num_rel
    assert rows[("NumRel", "all")] == "561"  # summed, as trec_eval sums it


def test_evalkit_eval_reads_trec_evals_measure_options(capsys):
    """``-m P`` (trec_eval's default cutoffs) and ``-m success.1,10``: the values of
    trec_eval's own expected output for the same files."""
    from evalkit.cli import eval_main

    runs, qrels = str(DATA / "results.test"), str(DATA / "qrels.test")
    eval_main([runs, "--qrels", qrels, "-m", "P", "-m", "success.1,10"])
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    got = {m.strip(): v for m, q, v in rows if q == "all" and m.strip() != "runid"}
    want = expected("out.test.aq")
    names = [f"P_{k}" for k in (5, 10, 15, 20, 30, 100, 200, 500, 1000)]
    names += ["success_1", "success_10"]
    assert got == {from_trec_eval(name): want[name]["all"] for name in names}


@pytest.fixture(scope="module")
def judged_only_collection(tmp_path_factory):
    """A BEIR folder whose corpus holds only the judged documents of qrels.test: the test
    run retrieves many documents it has no text for, as an engine over a larger
    collection does."""
    import json

    from evalkit.trec import read_qrels

    folder = tmp_path_factory.mktemp("judged-only")
    qrels = read_qrels(DATA / "qrels.test")
    docs = sorted(set(qrels.doc_id))
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "title": "", "text": f"text of {d}"}) + "\n" for d in docs)
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n" for q in ("301", "302", "303"))
    )
    (folder / "qrels").mkdir()
    rows = "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels.itertuples(index=False))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def test_an_external_run_over_a_larger_collection_scores_as_trec_eval_scores_it(
    judged_only_collection, tmp_path
):
    from evalkit.runner import run_experiment
    from tests.conftest import compose

    overrides = [
        "dataset=local",
        f"dataset.path={judged_only_collection}",
        f"cache.dir={tmp_path / 'cache'}",
        "retriever=run_file",
        f"retriever.path={DATA / 'results.test'}",
        "eval.metrics=[P@100,AP,NumRet]",
        "latency.enabled=false",
        "show_progress=false",
    ]
    plain = run_experiment(compose([*overrides, "reranker=none"]), tmp_path / "plain")
    # trec_eval -m all_trec on the same pair: P_100 all 0.2467, map 0.1785, num_ret 1500
    first = plain.metrics["first_stage"]
    assert (round(first["P@100"], 4), round(first["AP"], 4), first["NumRet"]) == (
        0.2467,
        0.1785,
        1500,
    )
    assert plain.metrics["data_warnings"]["run_file_documents_without_text"] > 0
    reranked = run_experiment(
        compose(
            [
                *overrides,
                "reranker=python",
                "reranker.target=tests.plugin_reranker:make",
                "pipeline.depth=100",
            ]
        ),
        tmp_path / "reranked",
    )
    assert reranked.metrics["first_stage"] == first  # the same run, the same numbers
    assert len(reranked.run("reranked")) == 1500  # every line kept, text or not
    assert reranked.metrics["reranked"]["NumRet"] == 1500
    # the top 100 of 301-303 hold documents without text: counted, kept, not scored
    assert reranked.metrics["data_warnings"]["rerank_candidates_without_text"] > 0
