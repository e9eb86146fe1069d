#!/usr/bin/env bash
# The guide's evaluation: baseline against memory over N episodes, written as JSON (success rate with a
# 95% CI, average reward, inference time per action, peak GPU memory on CUDA / RSS on CPU).
#   ENV=memlens_cue_recall N=50 DEVICE=cuda bash recipes/evaluate.sh
# Without a simulator, compare on a dataset instead: DATASET=path/to/dataset bash recipes/evaluate.sh
set -euo pipefail
BASELINE=${BASELINE:-outputs/baseline/checkpoints/last/pretrained_model}
MEMORY=${MEMORY:-outputs/memory/checkpoints/last/pretrained_model}
ENV=${ENV:-memlens_cue_recall}; N=${N:-50}; DEVICE=${DEVICE:-cpu}; OUTPUT=${OUTPUT:-evaluation_results.json}
if [ -n "${DATASET:-}" ]; then
  exec memlens compare "$BASELINE" "$MEMORY" --dataset "$DATASET" --output "$OUTPUT" --device "$DEVICE"
fi
exec memlens compare "$BASELINE" "$MEMORY" --env "$ENV" --n-episodes "$N" --output "$OUTPUT" --device "$DEVICE"
