#!/usr/bin/env bash
# Dense transfer smoke run on one CUDA GPU, a few minutes: a one-step vit_b16 RILS checkpoint (the
# weights do not matter here, the protocols do) fine-tuned for a few hundred iterations at 512 px
# on the shapes-dense testbed, `rils eval segment` (UperNet, ADE20K layout) and `rils eval detect`
# (ViTDet Mask R-CNN, COCO layout), in bf16 at the recipes' batch sizes; keeps each result JSON
# (metrics, seconds per step) in $OUT.
#   on a CUDA machine (after benchmarks/perf/gpu.sh's install, or with rils installed):  bash benchmarks/perf/gpu_dense.sh
#   CPU path (tests):  GPU_DENSE_TINY=1 benchmarks/perf/gpu_dense.sh
# Each command is capped by `timeout`, so the script ends in time; what finished is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
OUT=${OUT:-benchmarks/perf/results/gpu}
RUNS=${RUNS:-runs/gpu_dense}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${GPU_DENSE_TINY:-}" ]; then
  PRESET=vit_nano8_32 DEV="--device cpu --precision fp32 --num-workers 0" SIZE=32 N_TRAIN=6 N_VAL=2
  SEG="--steps 2 --batch 2 --warmup-steps 1 --head-channels 8"
  DET="--steps 2 --batch 2 --warmup-steps 1 --fpn-channels 16 --box-head-dim 32 --rpn-batch 16 --roi-batch 16 --proposals 20"
  PRE="train.device=cpu train.precision=fp32 data.workers=0 train.batch_size=4"
  CAP=120
else
  PRESET=${PRESET:-vit_b16} DEV="--device cuda --precision bf16 --num-workers ${WORKERS:-14}" SIZE=${SIZE:-512}
  N_TRAIN=${N_TRAIN:-512} N_VAL=${N_VAL:-64}
  SEG="--steps ${SEG_STEPS:-300} --batch 16 --warmup-steps 50"
  DET="--steps ${DET_STEPS:-200} --batch 16 --warmup-steps 50"
  PRE="train.device=cuda train.precision=bf16 data.workers=${WORKERS:-14} train.batch_size=32"
  CAP=${CAP:-200}
fi
timeout -s TERM "$CAP" $PY -m rils pretrain -c demo method=rils model.preset=$PRESET train.max_steps=1 train.warmup_steps=1 \
  data.num_samples=64 logging.tensorboard=false output_dir="$RUNS/rils" overwrite=true $PRE > "$RUNS/pretrain.log" 2>&1 \
  || { echo "the one-step checkpoint failed: see $RUNS/pretrain.log"; exit 1; }
CKPT="$RUNS/rils/checkpoints/latest.pt"
[ -f "$RUNS/data/manifest.json" ] || $PY -m rils data prepare shapes-dense --out "$RUNS/data" --image-size $SIZE \
  --train $N_TRAIN --val $N_VAL > "$RUNS/prepare.log"
timeout -s KILL "$CAP" $PY -m rils eval segment --checkpoint "$CKPT" --dataset "$RUNS/data/ade" --size $SIZE $DEV $SEG \
  --quiet --out "$OUT/dense_segment_$PRESET.json" || echo "segment failed or passed its ${CAP}s cap"
timeout -s KILL "$CAP" $PY -m rils eval detect --checkpoint "$CKPT" --dataset "$RUNS/data/coco" --size $SIZE $DEV $DET \
  --quiet --out "$OUT/dense_detect_$PRESET.json" || echo "detect failed or passed its ${CAP}s cap"
$PY - "$OUT" "$PRESET" <<'PY'
import json, sys
from pathlib import Path
out, preset = Path(sys.argv[1]), sys.argv[2]
print("| protocol | steps | s/step | metric |\n|---|---|---|---|")
for name, key in (("segment", lambda m: f"mIoU {m['mIoU']:.4f}"), ("detect", lambda m: f"box AP {m['bbox']['AP']:.4f}")):
    f = out / f"dense_{name}_{preset}.json"
    if f.is_file():
        r = json.loads(f.read_text())
        print(f"| {name} | {r['steps']} | {r['seconds_per_step']} | {key(r['metrics'])} |")
    else:
        print(f"| {name} | not run | | |")
PY
