#!/usr/bin/env bash
# Zero-shot patch segmentation on the demo corpus (docs/RESULTS.md): RILS, CLIP and MAE+CLIP pre-trained
# with the same demo recipe and budget, each scored by `rils eval patchseg` on the held-out split.
# (`make demo` leaves the RILS run in runs/demo: copy it to runs/patchseg/rils to skip retraining it.)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
RES=benchmarks/studies/patchseg/results
mkdir -p "$RES"
for m in rils clip mae_clip; do
  out=runs/patchseg/$m
  [ -f "$out/checkpoints/latest.pt" ] || $PY -m rils pretrain -c demo method=$m output_dir=$out resume=latest
  for task in shape color; do
    $PY -m rils eval patchseg --checkpoint "$out/checkpoints/latest.pt" --dataset demo-shapes --split val \
        --task $task --precision fp32 --num-workers 0 --quiet --no-cache --out "$RES/patchseg_${m}_${task}.json"
  done
  $PY -m rils eval zeroshot --checkpoint "$out/checkpoints/latest.pt" --dataset demo-shapes --split val \
      --task shape --precision fp32 --num-workers 0 --quiet --no-cache --out "$RES/patchseg_${m}_zeroshot_shape.json"
  $PY -m rils eval zeroshot --checkpoint "$out/checkpoints/latest.pt" --dataset demo-shapes --split val \
      --task color --precision fp32 --num-workers 0 --quiet --no-cache --out "$RES/patchseg_${m}_zeroshot_color.json"
  cp "$out/metrics.jsonl" "$RES/patchseg_${m}.metrics.jsonl"
done
