#!/usr/bin/env bash
# The GPU benchmarks behind docs/PERFORMANCE.md, for a machine with one CUDA GPU, in about 8 minutes on an H200:
#   1. install from the repo with no network: the package from src/; open_clip, ftfy, webdataset and
#      the timm this checkout is tested with from wheels carried in .gpu_wheels/, faster-coco-eval for
#      the dense smoke run (the device image
#      has torch, tensorboard, ... but not open_clip or webdataset, and its own timm);
#   1b. the device line: name, and the bf16 matmul rate measured on random data (the ceiling an MFU
#      against the datasheet peak should be read beside);
#   2. rils bench, vit_b16, CLIP and RILS (and open_clip's CLIP) in bf16 at batch 256 and 128, eager
#      and torch.compile (open_clip's step compiled too, as its trainer's --torchcompile does): images/s,
#      MFU against the device's bf16 peak, peak memory, and an operator profile of one more step of
#      each timed step (compiled ones too, at no second compile; all in one profiles_*.txt, so a
#      run leaves few files). Each bench is capped by `timeout` (BENCH_CAP s) and
#      none starts after DEADLINE s, so the script ends in time and what finished is kept (most
#      important first); and the host-device synchronisations of one step (benchmarks/perf/cuda_syncs.py).
#      A run "B:graphs" (not in the default RUNS_) is "B:compile" replayed as CUDA graphs (compile
#      mode reduce-overhead);
#   3. with REPRO=1, benchmarks/studies/shapes/gpu_repro.sh (CLIP vs RILS on the shapes corpus at vit_s16,
#      scored and fine-tuned for segmentation and detection: about 8 minutes);
#   4. with DENSE=1, benchmarks/perf/gpu_dense.sh (the dense protocols at 512 px on ViT-B/16, a few
#      hundred iterations each: about 3-5 minutes more).
# Outputs go to $OUT; the summary table is printed last.
#
#   with network, once:    benchmarks/perf/gpu.sh --prepare        # wheels into .gpu_wheels/ (git-ignored)
#   on the GPU machine:    bash benchmarks/perf/gpu.sh               # copy .gpu_wheels/ along with the checkout
#   CPU path (tests):      GPU_SH_TINY=1 benchmarks/perf/gpu.sh      # vit_nano8_32 on the CPU, seconds
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=.gpu_wheels
if [ "${1:-}" = "--prepare" ]; then
  # the versions this checkout is tested with (the ones in .venv), so the device runs the same code
  PIP=${PIP:-.venv/bin/pip}
  pins=$($PIP list --format=freeze 2>/dev/null | grep -i -E '^(open.clip.torch|ftfy|wcwidth|timm|webdataset|braceexpand|faster.coco.eval)==' || true)
  $PIP download --no-deps -d "$WHEELS" ${pins:-open_clip_torch ftfy wcwidth timm webdataset braceexpand faster-coco-eval}
  exit 0
fi
PY=${PY:-python3}
OUT=${OUT:-benchmarks/perf/results/gpu}
mkdir -p "$OUT"
SITE=$(mktemp -d)
if ! $PY -c "import open_clip, ftfy, faster_coco_eval" 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no open_clip here and no wheels in $WHEELS: run benchmarks/perf/gpu.sh --prepare first, and carry $WHEELS"; exit 2; }
  $PY -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
fi
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c "import torch, timm, rils; print('torch', torch.__version__, '| timm', timm.__version__, '| cuda', torch.cuda.is_available(), '| rils', rils.__version__)"
START=$(date +%s)

if [ -n "${GPU_SH_TINY:-}" ]; then   # the CPU path: same commands, tiny sizes
  PRESET=vit_nano8_32 DEVICE=cpu PRECISION=fp32 RUNS_="8:eager" STEPS=2 WARMUP=1
else
  PRESET=${PRESET:-vit_b16} DEVICE=cuda PRECISION=bf16 STEPS=${STEPS:-10} WARMUP=${WARMUP:-5}
  # batch:what, most important first; the eager runs before the compiled ones, since compiling the
  # three models from a cold cache took over 200 s on an H200 (benchmarks/perf/results/gpu/h200_9a4be0a/gpu_log.txt)
  RUNS_=${RUNS_:-"64:syncs 256:eager 128:eager 256:compile 128:compile"}
fi
BENCH_CAP=${BENCH_CAP:-300} DEADLINE=${DEADLINE:-180}   # so the last bench ends by 480 s

$PY - "$OUT" "$DEVICE" <<'PY'
import json, sys, time, torch
out, device = sys.argv[1], sys.argv[2]
info = {"device": device}
if device == "cuda" and torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(name=p.name, multiprocessors=p.multi_processor_count, memory_gib=p.total_memory / 2**30)
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    info["bf16_matmul_tflops_measured"] = 10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12
json.dump(info, open(f"{out}/device.json", "w"), indent=1)
print("device:", info)
PY

for run in $RUNS_; do
  b=${run%%:*} c=${run##*:}
  if [ $(( $(date +%s) - START )) -gt "$DEADLINE" ]; then echo "== skip $PRESET batch $b $c: past ${DEADLINE}s"; continue; fi
  echo "== $c $PRESET batch $b ($(( $(date +%s) - START ))s)"
  if [ "$c" = syncs ]; then     # host-device synchronisations in one step, per method, and where
    timeout -s KILL 60 $PY benchmarks/perf/cuda_syncs.py "$OUT/syncs_${PRESET}.json" --preset "$PRESET" --batch "$b" \
        || echo "sync count failed or passed its 60s cap"
    continue
  fi
  flag=""; [ "$c" = compile ] && flag="--compile"
  [ "$c" = graphs ] && flag="--compile --compile-mode reduce-overhead"   # compiled, replayed as CUDA graphs
  timeout -s KILL "$BENCH_CAP" $PY -m rils bench --preset "$PRESET" --methods clip rils --batch "$b" --precision "$PRECISION" \
      --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" --repeats 3 --max-seconds "${MAX_S:-60}" $flag \
      --out "$OUT/bench_${PRESET}_b${b}_${c}.json" --profile-out "$SITE/profile.txt" \
      || echo "bench $PRESET b$b $c failed or passed its ${BENCH_CAP}s cap"
  [ -f "$SITE/profile.txt" ] && { echo "#### $PRESET batch $b $c"; cat "$SITE/profile.txt"; } >> "$OUT/profiles_${PRESET}.txt"
  rm -f "$SITE/profile.txt"
done
[ "${REPRO:-0}" = 1 ] && { bash benchmarks/studies/shapes/gpu_repro.sh || echo "gpu_repro.sh failed"; }
[ "${DENSE:-0}" = 1 ] && { bash benchmarks/perf/gpu_dense.sh || echo "gpu_dense.sh failed"; }

$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
rows = []
dev = json.loads((Path(sys.argv[1]) / "device.json").read_text())
ceiling = dev.get("bf16_matmul_tflops_measured")
for f in sorted(Path(sys.argv[1]).glob("bench_*.json")):
    r = json.loads(f.read_text())
    for name, s in r["results"].items():
        mfu = "" if s.get("mfu") is None else f"{100 * s['mfu']:.1f} %"
        of_measured = "" if not ceiling else f"{100 * s['achieved_tflops'] / ceiling:.1f} %"
        rows.append(f"| {f.stem.split('_', 1)[1]} | {name} | {s['images_per_sec']:.0f} | {s['achieved_tflops']:.0f} "
                    f"| {mfu} | {of_measured} | {s['peak_mem_mb']:.0f} |")
    rows.append(f"| | ratios | " + ", ".join(f"{k} {v:.3f}" for k, v in r["ratios"].items()) + " | | | | |")
print(f"\ndevice: {dev}")
print("\n| run | step | images/s | TFLOP/s | MFU (datasheet peak) | of measured matmul | peak MB |\n|---|---|---|---|---|---|---|")
print("\n".join(rows))
PY
