#!/usr/bin/env bash
# The guide's memory training: 4 memory tokens (2 quick check / 4 standard / 8 enhanced), unrolled over K
# consecutive segments with truncated BPTT. The guide's recipes: 2 tokens/10k steps/batch 8 (quick),
# 4 tokens/50k (standard), 4 or 8 tokens/200k (full). GPU recipe from smolvla_base:
#   DATASET=<USER>/<DATASET> BASE=lerobot/smolvla_base M=4 STEPS=50000 BATCH=8 bash recipes/train_memory.sh
set -euo pipefail
DATASET=${DATASET:-local/cue_recall_train}; ROOT=${ROOT:-artifacts/experiment/cue_recall/train}
BASE=${BASE:-}; M=${M:-4}; STEPS=${STEPS:-1500}; BATCH=${BATCH:-16}; K=${K:-9}; OUT=${OUT:-outputs/memory}
if [ -n "$BASE" ]; then   # every SmolVLA weight loads; model.mem_tokens starts fresh (reported)
  exec memlens train --policy.path="$BASE" --policy.num_mem_tokens="$M" --policy.n_mem_segments="$K" \
    --policy.mem_at_end=false --policy.read_mem_from_cache=false \
    --dataset.repo_id="$DATASET" --output_dir="$OUT" --batch_size="$BATCH" --steps="$STEPS" --policy.device=cuda
fi
exec "${PYTHON:-python}" -c "
from memlens.workflows.train import run_lerobot_train, tiny_train_args
run_lerobot_train(tiny_train_args(dataset_root='$ROOT', output_dir='$OUT', steps=$STEPS, batch_size=$BATCH,
                                  num_mem_tokens=$M, n_mem_segments=$K, optimizer_lr=3e-4))"
