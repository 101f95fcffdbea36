#!/usr/bin/env bash
# CLIP vs RILS on the shapes corpus on one GPU, within about 8 minutes (docs/RESULTS.md): the corpus
# is rendered on the fly by the CPU cores (data.workers), each method trains a fixed number of steps
# (same seed, data, recipe: configs/shapes.yaml at a larger preset and batch), then both are scored
# on the held-out split and the primary endpoints are printed, RILS - CLIP last.
#   on a CUDA machine (after benchmarks/perf/gpu.sh's install, or with rils installed):  bash benchmarks/studies/shapes/gpu_repro.sh
#   CPU path (tests):  GPU_REPRO_TINY=1 benchmarks/studies/shapes/gpu_repro.sh
# Each training run is capped by `timeout` (SIGTERM: the run saves its checkpoint and stops), so
# the script ends in time even on a slower GPU; the steps each run reached are printed with it.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-python3}
OUT=${OUT:-benchmarks/perf/results/gpu}
RUNS=${RUNS:-runs/gpu_repro}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${GPU_REPRO_TINY:-}" ]; then
  ARGS="model.preset=vit_nano8_32 train.device=cpu train.precision=fp32 data.workers=0 train.batch_size=8 train.max_steps=2 data.num_samples=16 train.warmup_steps=1"
  CAP=120; export SHAPES_EVAL_TRAIN_SAMPLES=64 SHAPES_EVAL_VAL_SAMPLES=48
else
  STEPS=${STEPS:-1000}; BATCH=${BATCH:-256}
  ARGS="model.preset=${PRESET:-vit_s16} train.device=cuda train.precision=bf16 data.workers=${WORKERS:-14}
        train.batch_size=$BATCH train.max_steps=$STEPS data.num_samples=$(( STEPS * BATCH )) train.lr=1e-3
        train.lr_base_batch=$BATCH train.warmup_steps=$(( STEPS / 10 )) train.checkpoint_every=$STEPS"
  CAP=${CAP:-170}
fi
for m in clip rils; do
  t0=$(date +%s)
  timeout -s TERM "$CAP" $PY -m rils pretrain -c shapes method=$m output_dir="$RUNS/$m" overwrite=true $ARGS \
    > "$RUNS/$m.log" 2>&1 || echo "$m: training stopped by the ${CAP}s cap or failed (exit $?): see $RUNS/$m.log"
  cp "$RUNS/$m/metrics.jsonl" "$OUT/repro_$m.metrics.jsonl"
  $PY benchmarks/studies/shapes_eval.py "$RUNS/$m/checkpoints/latest.pt" "$OUT/repro_$m.json" method=$m \
    train_seconds=$(( $(date +%s) - t0 )) 2>> "$RUNS/$m.log"
done
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
r = {m: json.loads((out / f"repro_{m}.json").read_text()) for m in ("clip", "rils")}
steps = {m: json.loads((out / f"repro_{m}.metrics.jsonl").read_text().splitlines()[-1])["step"] for m in r}
keys = [("zeroshot_top1", "zero-shot top-1, mean of shape and colour"), ("retrieval_i2t_r1", "retrieval i->t R@1"),
        ("patchseg_color_miou", "colour patch-seg mIoU"), ("linear_top1", "linear probe, shape")]
print(f"\n| endpoint | CLIP ({steps['clip']} steps) | RILS ({steps['rils']} steps) | RILS - CLIP |\n|---|---|---|---|")
for k, label in keys:
    a, b = r["clip"].get(k), r["rils"].get(k)
    print(f"| {label} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
PY
