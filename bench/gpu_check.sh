#!/usr/bin/env bash
# The GPU check: on a CUDA machine, in under 8 minutes, the figures a CPU cannot give, into one file.
#
#   bash bench/gpu_check.sh [OUT_FILE]        (default: artifacts/gpu_check.md; PYTHON=... to pick the interpreter)
#
# 1. the test suite's CUDA-marked tests (tests/test_cuda.py: inference fp32 and use_amp, checkpointed training,
#    capture, each against the CPU);
# 2. bench/bench_policy.py at full size on CUDA: latency and max_memory_allocated of a new chunk for M in {0, 4, 16}
#    (mem_at_end off and on), float32, then use_amp in bfloat16;
# 3. bench/bench_train_memory.py at full size: one recurrent training step at K=1 and K=8, per-segment
#    checkpointing off and on (peak memory, time);
# 4. bench/bench_capture.py at full size on CUDA: capture overhead against plain replay.
# Each step has its own time limit; a step that fails or runs out of time says so in the file and the rest still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-artifacts/gpu_check.md}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$(dirname "$OUT")"
LOG="${OUT%.*}.log"
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to $PY (torch.cuda.is_available() is False): nothing to measure." >&2
  exit 2
fi
START=$(date +%s)
{
  echo "# GPU check"
  echo
  echo "- date: $(date -Iseconds); host: $(hostname)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "- $("$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '; bf16 supported:', torch.cuda.is_bf16_supported())")"
  echo "- command: bash bench/gpu_check.sh $OUT"
} > "$OUT"

step() {  # step TITLE LIMIT_S COMMAND...
  local title=$1 limit=$2; shift 2
  local t0=$(date +%s)
  printf '\n## %s\n\n```\n' "$title" >> "$OUT"
  timeout "$limit" "$@" >> "$OUT" 2>> "$LOG"
  local rc=$?
  printf '```\n\n' >> "$OUT"
  if [ $rc -ne 0 ]; then
    echo "**step failed or ran out of its ${limit} s (exit status $rc); its stderr is in $LOG**" >> "$OUT"
  fi
  echo "(${title}: $(( $(date +%s) - t0 )) s)" >> "$OUT"
}

step "CUDA-marked tests" 110 "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
step "Chunk latency and peak memory, full size, float32" 120 \
  "$PY" bench/bench_policy.py --sizes full --reps 3 --pair-reps 3 --no-train --ms 4,16
step "Chunk latency and peak memory, full size, use_amp bfloat16" 120 \
  "$PY" bench/bench_policy.py --sizes full --reps 3 --pair-reps 3 --no-train --ms 4,16 --amp-dtype bfloat16
step "Recurrent training step, full size, K=1 and K=8, checkpointing off and on" 100 \
  "$PY" bench/bench_train_memory.py --sizes full --ks 1,8 --reps 2
step "Capture overhead, full size, CUDA" 60 \
  "$PY" bench/bench_capture.py --sizes full --device cuda --episodes 2 --reps 2
echo "total: $(( $(date +%s) - START )) s" >> "$OUT"
echo "gpu_check: figures in $OUT"
