#!/usr/bin/env bash
# CPU train-step benchmarks behind docs/PERFORMANCE.md. Each run measures rils' CLIP and RILS
# steps and open_clip's CLIP step side by side (interleaved), and writes JSON to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results
mkdir -p "$OUT"
# the demo preset, bf16 and fp32 (the bf16 speed-up is their ratio)
$PY -m rils bench --preset vit_ti8_64 --batch 64 --precision bf16 --steps 5 --repeats 3 --out $OUT/cpu_vit_ti8_64_bf16.json
$PY -m rils bench --preset vit_ti8_64 --batch 64 --precision fp32 --steps 5 --repeats 3 --out $OUT/cpu_vit_ti8_64_fp32.json
# one data worker's rate (render/decode + transform + tokenise) against the step rate above
$PY -m rils bench --data --preset vit_ti8_64 --methods rils slip --out $OUT/data_vit_ti8_64.json
# a 224 px preset: ViT-S/16
$PY -m rils bench --preset vit_s16 --batch 16 --precision bf16 --steps 3 --repeats 3 --out $OUT/cpu_vit_s16_bf16.json
# bf16 against fp32 on the same model objects, interleaved (the speed-up goal)
$PY -m rils bench --precision-ratio --preset vit_ti8_64 --batch 64 --steps 3 --repeats 3 --out $OUT/precision_vit_ti8_64.json
$PY -m rils bench --precision-ratio --preset vit_s16 --batch 16 --steps 2 --repeats 3 --out $OUT/precision_vit_s16.json
# where the time goes: operator profiles of one step (ours and open_clip's)
$PY -m rils bench --profile --preset vit_s16 --batch 16 --precision bf16 --methods clip rils > $OUT/profile_vit_s16_bf16.txt 2>&1
$PY benchmarks/perf_tables.py
