#!/usr/bin/env bash
# The study behind the demo recipe (README, "make demo"): each line trains and scores one variant
# with `rils demo` and keeps its results.json as benchmarks/studies/demo/results/study/NAME.json. Variants whose
# JSON exists are skipped, so an interrupted study continues where it stopped.
#   benchmarks/studies/demo/study.sh [NAME ...]     (default: every variant below)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
PRECISION=${PRECISION:-fp32}   # fp32 as an AVX2 laptop runs it; PRECISION=auto is faster where bf16 is native
RES=benchmarks/studies/demo/results/study
mkdir -p runs/demo_study
mkdir -p "$RES"
declare -A VARIANTS=(
  [p64_single_colorless50_s300]="model.preset=vit_ti8_64 data.demo_max_shapes=1 data.demo_colorless_captions=0.5 train.max_steps=300 train.lr=1e-3 train.warmup_steps=30"
  [p32_colorless50_b64_s300]="model.preset=vit_ti8_32 data.demo_colorless_captions=0.5 train.max_steps=300 train.lr=1e-3 train.warmup_steps=30"
  [p32_mixed_b64_s300]="model.preset=vit_ti8_32 train.max_steps=300 train.lr=1e-3 train.warmup_steps=30"
  [p32_onecolor_b64_s300]="model.preset=vit_ti8_32 data.demo_one_color=true train.max_steps=300 train.lr=1e-3 train.warmup_steps=30"
  [mixed_b64_s150]="train.max_steps=150 train.lr=2e-3 train.warmup_steps=15"
  [onecolor_b64_s150]="data.demo_one_color=true train.max_steps=150 train.lr=2e-3 train.warmup_steps=15"
  [clip_p32_mixed_b64_s300]="method=clip model.preset=vit_ti8_32 train.max_steps=300 train.lr=1e-3 train.warmup_steps=30"
  [p32_nocrop_b64_s300]="model.preset=vit_ti8_32 data.min_crop_scale=1.0 train.max_steps=300 train.lr=1e-3 train.warmup_steps=30"
  [p32_nocrop_b64_s200]="model.preset=vit_ti8_32 data.min_crop_scale=1.0"
  [p32_nocrop_lr2e3_b64_s200]="model.preset=vit_ti8_32 data.min_crop_scale=1.0 train.lr=2e-3"
  [p32_nocrop_colorless30_b64_s200]="model.preset=vit_ti8_32 data.min_crop_scale=1.0 data.demo_colorless_captions=0.3"
  [p32_nocrop_onecolor_b64_s200]="model.preset=vit_ti8_32 data.min_crop_scale=1.0 data.demo_one_color=true"
  [p32_nocrop_max2_b64_s200]="model.preset=vit_ti8_32 data.min_crop_scale=1.0 data.demo_max_shapes=2"
  [clip_p32_nocrop_b64_s300]="method=clip model.preset=vit_ti8_32 data.min_crop_scale=1.0 train.max_steps=300 train.lr=1e-3 train.warmup_steps=30"
  # the recipe as it is (configs/demo.yaml), per seed and precision: the margin check (bf16 only where native)
  [recipe_fp32_s0]="seed=0 train.precision=fp32"
  [recipe_fp32_s1]="seed=1 train.precision=fp32"
  [recipe_fp32_s2]="seed=2 train.precision=fp32"
  [recipe_bf16_s0]="seed=0 train.precision=bf16"
  [recipe_bf16_s1]="seed=1 train.precision=bf16"
  [recipe_bf16_s2]="seed=2 train.precision=bf16"
  # the recipe at 300 steps (the same lr, 10 % warm-up): does the margin hold on every seed?
  [s300_fp32_s0]="seed=0 train.precision=fp32 train.max_steps=300 train.warmup_steps=30"
  [s300_fp32_s1]="seed=1 train.precision=fp32 train.max_steps=300 train.warmup_steps=30"
  [s300_fp32_s2]="seed=2 train.precision=fp32 train.max_steps=300 train.warmup_steps=30"
)
NATIVE_BF16=$($PY -c "import torch; print(torch.ops.mkldnn._is_mkldnn_bf16_supported())")
names=("$@"); [ ${#names[@]} -gt 0 ] || names=($(printf '%s\n' "${!VARIANTS[@]}" | sort))
for name in "${names[@]}"; do
  [ -f "$RES/$name.json" ] && { echo "skip $name (done)"; continue; }
  if [[ "${VARIANTS[$name]}" == *precision=bf16* ]] && [ "$NATIVE_BF16" != True ]; then
    echo "skip $name (bf16 is emulated on this CPU: a run would take hours)"; continue
  fi
  out=runs/demo_study/$name
  rm -rf "$out"
  start=$(date +%s)
  $PY -m rils demo --out "$out" train.precision=$PRECISION ${VARIANTS[$name]} > "$out.log" 2>&1 || { echo "$name failed: see $out.log"; continue; }
  $PY - "$out/results.json" "$RES/$name.json" "$(( $(date +%s) - start ))" "${VARIANTS[$name]}" <<'PY'
import json, platform, subprocess, sys
r = json.load(open(sys.argv[1]))
r["wall_seconds"] = int(sys.argv[3]); r["overrides"] = sys.argv[4]; r["cpu"] = platform.processor() or "see lscpu"
r["commit"] = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
json.dump(r, open(sys.argv[2], "w"), indent=2)
PY
  echo "$name: $(python3 -c "import json;r=json.load(open('$RES/$name.json'));print({k:round(v['top1'],3) for k,v in r['zeroshot'].items()}, 'i2t R@1', round(r['retrieval_i2t_r1'],3), r['wall_seconds'],'s')")"
done
