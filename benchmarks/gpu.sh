#!/usr/bin/env bash
# The one script a session with a lent GPU runs (docs/PERFORMANCE.md), in about 8 minutes on an H200:
#   1. install from the repo with no network: the package from src/, open_clip and ftfy from wheels
#      carried in .gpu_wheels/ (the device image has torch, timm, tensorboard, ... but not those);
#   2. rils bench, vit_b16, CLIP and RILS (and open_clip's CLIP) in bf16 at batch 128 and 256, eager
#      and torch.compile: images/s, MFU against the device's bf16 peak, peak memory;
#   3. with REPRO=1, benchmarks/gpu_repro.sh (CLIP vs RILS on the shapes corpus).
# Outputs go to $OUT (the device tool brings them back); the summary table is printed last.
#
#   here, once (network):  benchmarks/gpu.sh --prepare        # wheels into .gpu_wheels/ (git-ignored)
#   on the device:         bash benchmarks/gpu.sh               # run with carry [".gpu_wheels"]
#   CPU path (tests):      GPU_SH_TINY=1 benchmarks/gpu.sh      # vit_nano8_32 on the CPU, seconds
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu_wheels
if [ "${1:-}" = "--prepare" ]; then
  # the versions this checkout is tested with (the ones in .venv), so the device runs the same code
  PIP=${PIP:-.venv/bin/pip}
  pins=$($PIP list --format=freeze 2>/dev/null | grep -i -E '^(open.clip.torch|ftfy|wcwidth)==' || true)
  $PIP download --no-deps -d "$WHEELS" ${pins:-open_clip_torch ftfy wcwidth}
  exit 0
fi
PY=${PY:-python3}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
SITE=$(mktemp -d)
if ! $PY -c "import open_clip, ftfy" 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no open_clip here and no wheels in $WHEELS: run benchmarks/gpu.sh --prepare first, and carry $WHEELS"; exit 2; }
  $PY -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
fi
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c "import torch, rils; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| rils', rils.__version__)"

if [ -n "${GPU_SH_TINY:-}" ]; then   # the CPU path: same commands, tiny sizes
  PRESET=vit_nano8_32 DEVICE=cpu PRECISION=fp32 BATCHES="8" STEPS=2 WARMUP=1 COMPILES="eager"
else
  PRESET=${PRESET:-vit_b16} DEVICE=cuda PRECISION=bf16 BATCHES=${BATCHES:-"128 256"} STEPS=${STEPS:-10} WARMUP=${WARMUP:-5}
  COMPILES=${COMPILES:-"eager compile"}
fi
for b in $BATCHES; do
  for c in $COMPILES; do
    flag=""; [ "$c" = compile ] && flag="--compile"
    echo "== bench $PRESET batch $b $c"
    $PY -m rils bench --preset "$PRESET" --methods clip rils --batch "$b" --precision "$PRECISION" --device "$DEVICE" \
        --steps "$STEPS" --warmup "$WARMUP" --repeats 3 --max-seconds 60 $flag --out "$OUT/bench_${PRESET}_b${b}_${c}.json" \
        || echo "bench $PRESET b$b $c failed"
  done
done
[ "${REPRO:-0}" = 1 ] && { bash benchmarks/gpu_repro.sh || echo "gpu_repro.sh failed"; }

$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
rows = []
for f in sorted(Path(sys.argv[1]).glob("bench_*.json")):
    r = json.loads(f.read_text())
    for name, s in r["results"].items():
        mfu = "" if s.get("mfu") is None else f"{100 * s['mfu']:.1f} %"
        rows.append(f"| {f.stem.split('_', 1)[1]} | {name} | {s['images_per_sec']:.0f} | {mfu} | {s['peak_mem_mb']:.0f} |")
    rows.append(f"| | ratios | " + ", ".join(f"{k} {v:.3f}" for k, v in r["ratios"].items()) + " | | |")
print("\n| run | step | images/s | MFU | peak MB |\n|---|---|---|---|---|")
print("\n".join(rows))
PY
