#!/usr/bin/env bash
# The open-loop load curve on Cranfield and the simulator's one-replica check
# (docs/benchmarks.md, "Latency under load"):
#   bash benchmarks/load_validation.sh OUT [extra evalkit-run overrides]
# The second stage is the real all-MiniLM-L6-v2 as a bi-encoder reranker at depth 10 on
# ONNX Runtime int8 (about 0.2 s per query on 2 CPU cores: one replica saturates near 5 QPS).
set -euo pipefail
if [ "${1:-}" = "--smoke" ]; then  # seconds, for the tests: the README plugin, one low rate
    out=$(mktemp -d)/load
    here=$(cd "$(dirname "$0")/.." && pwd)
    export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
    set -- reranker=python reranker.target=tests.plugin_reranker:make dataset.max_queries=5 \
        'latency.load_qps=[20]' latency.load_queries=20 latency.load_max_seconds=5 \
        reranker.backend=torch reranker.quantize=none cache.dir="$out-cache"
else
    out=${1:?usage: load_validation.sh OUT [overrides...] | --smoke}
    shift
fi
evalkit-run dataset=cranfield reranker=biencoder_packaged pipeline.depth=10 \
    reranker.backend=onnx reranker.quantize=int8 \
    latency.max_queries=20 latency.max_seconds=30 \
    'latency.load_qps=[1,2,3,4.5,7]' latency.load_queries=250 latency.load_max_seconds=250 \
    latency.max_batch_pairs=64 latency.max_wait_ms=20 \
    hydra.run.dir="$out" show_progress=false "$@"
python - "$out/load.json" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))
print("offered QPS | achieved | p50 ms | p95 ms | saturated | mean batch (queries)")
for p in load["points"]:
    print(f"{p['offered_qps']:g} | {p['achieved_qps']:.2f} | {p['p50_ms']:.0f} | "
          f"{p['p95_ms']:.0f} | {p['saturated']} | {p['mean_batch_queries']:.2f}")
print("validation (simulated 1 replica vs measured p95, below saturation):")
for v in load["validation"]:
    print(f"  {v['offered_qps']:g} QPS: measured {v['measured_p95_ms']:.0f} ms, simulated "
          f"{v['simulated_p95_ms']:.0f} ms, error {v['relative_error']:+.1%}")
for r, curve in load["simulated"].items():
    print(f"simulated {r} replica(s) p95:", [round(p["p95_ms"]) for p in curve])
m = load["service_model"]
print(f"service model: {m['fixed']:.1f} ms + {m['per_query']:.2f}/query + "
      f"{m['per_pair']:.2f}/pair + {m['per_token']:.4f}/token")
PY
