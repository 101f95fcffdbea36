#!/usr/bin/env bash
# CLIP vs RILS on the shapes corpus on one GPU, within about 8 minutes (docs/RESULTS.md): the corpus
# is rendered on the fly by the CPU cores (data.workers), each method trains a fixed number of steps
# (same seed, data, recipe: configs/shapes.yaml at a larger preset and batch), then both are scored
# on the held-out split and fine-tuned on the shapes-dense testbed at the preset's size with the
# second round's dense recipe (segmentation 600 steps x 16, detection 300 steps x 8: box and mask
# AP); the endpoints are printed, RILS - CLIP last. Single seed, beside the CPU studies' verdicts.
#   on a CUDA machine (after benchmarks/perf/gpu.sh's install, or with rils installed):  bash benchmarks/studies/shapes/gpu_repro.sh
#   CPU path (tests):  GPU_REPRO_TINY=1 benchmarks/studies/shapes/gpu_repro.sh
# Each pre-training is capped by `timeout` (SIGTERM: the run saves its checkpoint and stops) and each
# fine-tune by FT_CAP seconds (a fine-tune past it is reported as not finished), so the script ends
# in time even on a slower GPU; the steps each pre-training reached are printed with it.
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
  SIZE=32 PREP="--train 6 --val 2" FT_CAP=120 DEV="--device cpu --precision fp32 --num-workers 0"
  SEG=(--steps 2 --batch 2 --warmup-steps 1 --head-channels 8)
  DET=(--steps 2 --batch 2 --warmup-steps 1 --fpn-channels 16 --box-head-dim 32 --rpn-batch 16 --roi-batch 16 --proposals 20)
else
  STEPS=${STEPS:-1000}; BATCH=${BATCH:-256}
  ARGS="model.preset=${PRESET:-vit_s16} train.device=cuda train.precision=bf16 data.workers=${WORKERS:-14}
        train.batch_size=$BATCH train.max_steps=$STEPS data.num_samples=$(( STEPS * BATCH )) train.lr=1e-3
        train.lr_base_batch=$BATCH train.warmup_steps=$(( STEPS / 10 )) train.checkpoint_every=$STEPS"
  CAP=${CAP:-130}
  # the second round's fine-tuning recipe and testbed split, at the preset's size
  # shellcheck source=../dense_budget/recipe.sh
  source benchmarks/studies/dense_budget/recipe.sh
  SIZE=${SIZE:-224} FT_CAP=${FT_CAP:-45} DEV="--device cuda --precision bf16 --num-workers ${WORKERS:-14}"
  SEG=("${SEG_RECIPE[@]}") DET=("${DETECT_RECIPE[@]}")
fi
# the dense testbed is rendered beside the first pre-training
# shellcheck disable=SC2086
[ -f "$RUNS/dense/manifest.json" ] || $PY -m rils data prepare shapes-dense --out "$RUNS/dense" --image-size $SIZE \
  $PREP --seed 0 > "$RUNS/prepare.log" 2>&1 &
PREPARE=$!
for m in clip rils; do
  t0=$(date +%s)
  timeout -s TERM "$CAP" $PY -m rils pretrain -c shapes method=$m output_dir="$RUNS/$m" overwrite=true $ARGS \
    > "$RUNS/$m.log" 2>&1 || echo "$m: training stopped by the ${CAP}s cap or failed (exit $?): see $RUNS/$m.log"
  cp "$RUNS/$m/metrics.jsonl" "$OUT/repro_$m.metrics.jsonl"
  $PY benchmarks/studies/shapes_eval.py "$RUNS/$m/checkpoints/latest.pt" "$OUT/repro_$m.json" method=$m \
    train_seconds=$(( $(date +%s) - t0 )) 2>> "$RUNS/$m.log"
done
wait $PREPARE || { echo "preparing the dense testbed failed: see $RUNS/prepare.log"; exit 1; }
finetune() {  # method protocol layout recipe...
  local m=$1 protocol=$2 layout=$3; shift 3
  rm -f "$OUT/repro_$m.$protocol.json"   # a fine-tune past its cap must not show an earlier run's result
  # shellcheck disable=SC2086
  timeout -s KILL "$FT_CAP" $PY -m rils eval "$protocol" --checkpoint "$RUNS/$m/checkpoints/latest.pt" \
    --dataset "$RUNS/dense/$layout" --size $SIZE --seed 0 $DEV "$@" --quiet --out "$OUT/repro_$m.$protocol.json" \
    >> "$RUNS/$m.log" 2>&1 || echo "$m: $protocol failed or passed its ${FT_CAP}s cap: see $RUNS/$m.log"
}
for m in clip rils; do
  finetune $m segment ade "${SEG[@]}"
  finetune $m detect coco "${DET[@]}"
done
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
records = {f.name.removeprefix("repro_").removesuffix(".json"): json.loads(f.read_text()) for f in out.glob("repro_*.json")}


def value(record, *keys):  # None where the record or a key is missing (a fine-tune past its cap)
    v = records.get(record)
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return v


steps = {m: json.loads((out / f"repro_{m}.metrics.jsonl").read_text().splitlines()[-1])["step"] for m in ("clip", "rils")}
rows = [("", ("zeroshot_top1",), "zero-shot top-1, mean of shape and colour"), ("", ("retrieval_i2t_r1",), "retrieval i->t R@1"),
        ("", ("patchseg_color_miou",), "colour patch-seg mIoU"), ("", ("linear_top1",), "linear probe, shape"),
        (".segment", ("metrics", "mIoU"), "segmentation mIoU (fine-tuned)"),
        (".detect", ("metrics", "bbox", "AP"), "detection box AP"), (".detect", ("metrics", "segm", "AP"), "detection mask AP")]
print(f"\n| endpoint | CLIP ({steps['clip']} steps) | RILS ({steps['rils']} steps) | RILS - CLIP |\n|---|---|---|---|")
for part, keys, label in rows:
    a, b = (value(m + part, *keys) for m in ("clip", "rils"))
    cells = [f"{x:.3f}" if x is not None else "not finished" for x in (a, b)]
    print(f"| {label} | {cells[0]} | {cells[1]} | {f'{b - a:+.3f}' if None not in (a, b) else ''} |")
PY
