#!/usr/bin/env bash
# Every GPU figure of issue 23 in one command, on a lent GPU machine:
#
#   here:   bash benchmarks/gpu_all.sh --wheels
#   there:  run(command="bash benchmarks/gpu_all.sh", carry=[".whl"], timeout_s=570)
#
# --wheels (here, where the package index is reachable): the wheels the GPU machine's image
# lacks, for its Python (3.12), into .whl/ (git-ignored), which the call carries; that
# machine reaches no index. Its image has torch, transformers, sentence-transformers,
# scipy, pandas, pyarrow, xxhash and filelock (the device tool's KINDS.md); evalkit travels
# as the working tree and runs from it, on the image's own torch.
#
# 1. benchmarks/gpu_check.py: the four rerankers' architectures in fp32/fp16/bf16 (pairs/s,
#    share of the card's peak, 100-pair query p50/p95, agreement with fp32), MiniLM-L6
#    against its targets, all-MiniLM-L6-v2 corpus docs/s, a real OOM back-off;
# 2. benchmarks/scoring_path.py --device cuda: old path, new path, the other batch shape
#    and the bare forward, interleaved (decides CUDA's batch shape).
#
# Results go to $OUT (the device tool brings that folder back) or results/gpu. Each step has
# a time limit so the call ends inside the device's 10 minutes with whatever finished.
# --smoke runs the same steps in seconds on a CPU (the slow test tier does).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--wheels" ]; then
  rm -rf .whl && mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "bm25s==0.3.16" || exit 2
  ls -l .whl
  exit 0
fi
SMOKE=""
[ "${1:-}" = "--smoke" ] && SMOKE="--smoke"
OUT="${OUT:-results/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WHEELS="${EVALKIT_WHEELS:-.whl}"  # the carried wheels (a test points this elsewhere)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  SITE=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl || exit 2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # evalkit from this tree; the image's torch
DEVICE=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
  python3 -c "import platform, torch, transformers, sentence_transformers as st
print('python', platform.python_version(), 'torch', torch.__version__, 'transformers',
      transformers.__version__, 'sentence-transformers', st.__version__, 'cpus', __import__('os').cpu_count())"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
failed=0
timeout 330 python3 benchmarks/gpu_check.py $SMOKE --out "$OUT/gpu_check.md" 2>&1 \
  | grep -v "Loading weights" | tee "$OUT/gpu_check.log" || failed=1
if python3 -c "import bm25s" 2>/dev/null; then
  timeout 210 python3 benchmarks/scoring_path.py --device "$DEVICE" $SMOKE \
    --out "$OUT/scoring_path.md" 2>&1 | tee "$OUT/scoring_path.log" || failed=1
else
  echo "scoring_path.py skipped: bm25s is not installed here; run 'bash benchmarks/gpu_all.sh" \
    "--wheels' where pip reaches an index and carry .whl with this call" | tee "$OUT/scoring_path.log"
  failed=1
fi
echo "== results ($DEVICE) =="
cat "$OUT"/gpu_check.md "$OUT"/scoring_path.md 2>/dev/null
exit $failed
