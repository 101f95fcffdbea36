#!/usr/bin/env bash
# Peak memory of one training step with gradient accumulation: 256 at once, 256 as
# 4 x 64 with the whole accumulated batch as negatives, and one micro-batch of 64; CPU, fp32.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
for run in "256 1" "256 4" "64 1"; do
  set -- $run
  $PY -m rils bench --preset vit_ti8_64 --methods clip rils --precision fp32 --batch $1 --accum-steps $2 \
      --steps 1 --warmup 0 --repeats 1 --target-half-width 0 --no-open-clip --device cpu \
      --out benchmarks/perf/results/accum_memory_b$1_k$2.json
done
