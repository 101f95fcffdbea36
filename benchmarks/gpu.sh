#!/usr/bin/env bash
# On a CUDA machine: vit_b16 RILS and CLIP at 224x224 in bf16, images/s and model FLOPs utilisation
# against the device's bf16 peak, beside open_clip's CLIP. About 3 minutes on an H100/H200.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BATCH=${BATCH:-128}
mkdir -p benchmarks/results
$PY -m rils bench --preset vit_b16 --batch "$BATCH" --precision bf16 --device cuda --steps 10 --warmup 5 \
    --repeats 3 --out benchmarks/results/gpu_vit_b16_bf16_b$BATCH.json
