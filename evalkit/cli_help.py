"""``evalkit-run --help``: evalkit's own help (Hydra's lists result folders as groups)."""

from __future__ import annotations


def run_help() -> str:
    """``evalkit-run --help``: what to type, the groups and their options, the main keys."""
    from evalkit.config.compose import _group_options

    groups = "\n".join(
        f"  {group:<12} {', '.join(_group_options(group))}"
        for group in ("experiments", "dataset", "retriever", "reranker", "eval")
    )
    return f"""usage: evalkit-run [-m] [GROUP=OPTION ...] [KEY=VALUE ...]

Two-stage retrieval on one dataset: first stage, optional reranker, quality and latency,
written to a result folder (results/runs/<time>_<name>; a sweep: results/sweeps/...).

examples:
  evalkit-run -m experiments=quickstart          # the shipped offline sweep (Cranfield)
  evalkit-run dataset=local dataset.path=DIR retriever=bm25 reranker=minilm_l6
  evalkit-run -m reranker=none,minilm_l6,minilm_l12 pipeline.depth=20,100
  evalkit-run dataset=cranfield reranker=minilm_l6_costonly latency.target_p95_ms=[100]

groups (GROUP=OPTION; a comma list with -m sweeps them):
{groups}

main keys (every key: evalkit-run --cfg job):
  pipeline.depth=100           candidates reranked per query
  pipeline.first_stage_k=null  candidates the first stage returns (1000 for evalkit's own)
  eval.metrics=[nDCG@10,...]   ir_measures names (trec_eval's names and any case accepted)
  latency.max_queries=100      timed queries; latency.target_p95_ms=[X] stops once decided
  latency.enabled=true         the online latency pass; load_qps=[...] for a load test
  cache.dir=~/.cache/evalkit   models, indexes, token ids and pair scores
  hydra/launcher=joblib        run a sweep's jobs in parallel (submitit_slurm, ray too)

then: evalkit-report RESULTS_DIR [--p95-ms X]   and   evalkit-decide RESULTS_DIR --p95-ms X
Hydra's own flags: evalkit-run --hydra-help"""
