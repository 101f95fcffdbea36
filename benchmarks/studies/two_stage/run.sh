#!/usr/bin/env bash
# Table 9 at small scale: RILS end to end against the paper's two-stage baselines, on the shapes
# testbed (configs/shapes.yaml), every pipeline with the same total budget (600 steps x 64):
#   single stage, 600 steps:  rils, clip, mae
#   MIM -> LiT:   mae 300 steps, then clip 300 steps with the image tower locked (init_from)
#   MIM -> CLIP:  mae 300 steps, then clip 300 steps, everything trained (init_from)
#   CLIP -> MIM:  clip 300 steps, then clip_target_mim 300 steps towards its frozen features (model.teacher)
# Each run's metrics.jsonl and held-out scores (benchmarks/studies/shapes_eval.py) are kept under
# benchmarks/studies/two_stage/results/; runs whose scores exist are skipped, so a stopped run continues.
# About 35 minutes on 2 cores. Then: python benchmarks/studies/two_stage/table.py
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/two_stage}
RES=${RES:-benchmarks/studies/two_stage/results}
SEED=${SEED:-0}
EXTRA=${EXTRA:-}   # more overrides for every run (CI: a tiny budget)
mkdir -p "$RUNS" "$RES"

run() {  # name overrides...
  local name="$1"; shift
  [ -f "$RES/$name.json" ] && { echo "skip $name (done)"; return; }
  local t0; t0=$(date +%s)
  $PY -m rils pretrain -c shapes seed="$SEED" output_dir="$RUNS/$name" resume=latest "$@" $EXTRA > "$RUNS/$name.log" 2>&1 \
    || { echo "$name failed: see $RUNS/$name.log"; exit 1; }
  cp "$RUNS/$name/metrics.jsonl" "$RES/$name.metrics.jsonl"
  $PY benchmarks/studies/shapes_eval.py "$RUNS/$name/checkpoints/latest.pt" "$RES/$name.json" \
    name="$name" seed="$SEED" pretrain_seconds="$(( $(date +%s) - t0 ))" overrides="$* $EXTRA" 2>> "$RUNS/$name.log"
  echo "$name done"
}
HALF=${HALF:-300}
run rils method=rils
run clip method=clip
run mae method=mae
run mae_stage1 method=mae train.max_steps="$HALF"
run clip_stage1 method=clip train.max_steps="$HALF"
run mim_to_lit method=clip model.lock_image=true init_from="$RUNS/mae_stage1/checkpoints/latest.pt" train.max_steps="$HALF"
run mim_to_clip method=clip init_from="$RUNS/mae_stage1/checkpoints/latest.pt" train.max_steps="$HALF"
run clip_to_mim method=clip_target_mim model.teacher="$RUNS/clip_stage1/checkpoints/latest.pt" train.max_steps="$HALF"
