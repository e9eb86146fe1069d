#!/usr/bin/env bash
# The guide's baseline: SmolVLA without memory (num_mem_tokens=0), same recurrent sampling as the memory run
# so both see the same segments. GPU recipe with a real checkpoint (needs the Hub or a Hub cache):
#   DATASET=<USER>/<DATASET> BASE=lerobot/smolvla_base STEPS=50000 BATCH=8 bash recipes/train_baseline.sh
# CPU demo on the memory task (tiny model, offline): bash recipes/train_baseline.sh   (uses defaults below)
set -euo pipefail
DATASET=${DATASET:-local/cue_recall_train}; ROOT=${ROOT:-artifacts/experiment/cue_recall/train}
BASE=${BASE:-}; STEPS=${STEPS:-1500}; BATCH=${BATCH:-16}; K=${K:-9}; OUT=${OUT:-outputs/baseline}
if [ -n "$BASE" ]; then   # real SmolVLA: fine-tune from the checkpoint, memory off
  exec memlens train --policy.path="$BASE" --policy.num_mem_tokens=0 --policy.n_mem_segments="$K" \
    --dataset.repo_id="$DATASET" --output_dir="$OUT" --batch_size="$BATCH" --steps="$STEPS" --policy.device=cuda
fi
exec "${PYTHON:-python}" -c "
from memlens.workflows.train import run_lerobot_train, tiny_train_args
run_lerobot_train(tiny_train_args(dataset_root='$ROOT', output_dir='$OUT', steps=$STEPS, batch_size=$BATCH,
                                  num_mem_tokens=0, n_mem_segments=$K, optimizer_lr=3e-4))"
