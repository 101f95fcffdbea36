#!/usr/bin/env bash
# CPU benchmarks behind docs/PERFORMANCE.md, on both kinds of CPU: "native" (whatever this CPU has;
# AVX-512 with bf16 on the CI kind) and "avx2" (the same CPU capped to AVX2 through
# ATEN_CPU_CAPABILITY / MKL / oneDNN, where bf16 is emulated, as on most laptops). Each `rils bench`
# measures our CLIP and RILS steps and open_clip's CLIP step interleaved, repeating until every
# ratio's bootstrap 95 % interval is within ±0.03 or the time cap. Results whose JSON exists are
# skipped, so a stopped run of the script continues where it left off. Needs an otherwise idle machine.
#   benchmarks/perf/cpu.sh [native|avx2 ...]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/perf/results
CAP=${CAP:-300}   # seconds of repetitions per bench at most
mkdir -p "$OUT"

bench() {  # file, then rils bench arguments
  local file=$OUT/$1; shift
  [ -f "$file" ] && { echo "skip $file (done)"; return; }
  echo "== $file"
  $PY -m rils bench "$@" --max-seconds "$CAP" --out "$file"
}

for kind in "${@:-native avx2}"; do
  for k in $kind; do
    if [ "$k" = avx2 ]; then
      export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
    else
      unset ATEN_CPU_CAPABILITY MKL_ENABLE_INSTRUCTIONS ONEDNN_MAX_CPU_ISA
    fi
    # the comparison preset: RILS against CLIP and ours against open_clip, fp32 everywhere
    bench "cpu_${k}_vit_ti8_64_fp32.json" --preset vit_ti8_64 --batch 64 --precision fp32 --steps 3 --repeats 4
    # where the time goes: operator profiles of one step of each (ours and open_clip's)
    [ -f "$OUT/profile_${k}_vit_ti8_64_fp32.txt" ] || $PY -m rils bench --profile --preset vit_ti8_64 --batch 64 \
      --precision fp32 --methods clip rils > "$OUT/profile_${k}_vit_ti8_64_fp32.txt" 2>&1
    # the issue's larger preset in fp32 (both kinds; bf16 below where the CPU has it)
    bench "cpu_${k}_vit_s16_fp32.json" --preset vit_s16 --batch 16 --precision fp32 --steps 2 --repeats 3
    # the demo preset: its step rate is what one data worker must outrun 3x
    bench "cpu_${k}_vit_ti8_32_auto.json" --preset vit_ti8_32 --batch 64 --precision auto --steps 4 --repeats 4
    [ -f "$OUT/data_${k}_vit_ti8_32.json" ] || \
      $PY -m rils bench --data --preset vit_ti8_32 --methods rils slip --out "$OUT/data_${k}_vit_ti8_32.json"
    if [ "$k" = native ] && $PY -c "import sys, torch; sys.exit(not torch.ops.mkldnn._is_mkldnn_bf16_supported())"; then
      bench "cpu_${k}_vit_ti8_64_bf16.json" --preset vit_ti8_64 --batch 64 --precision bf16 --steps 3 --repeats 4
      [ -f "$OUT/profile_${k}_vit_ti8_64_bf16.txt" ] || $PY -m rils bench --profile --preset vit_ti8_64 --batch 64 \
        --precision bf16 > "$OUT/profile_${k}_vit_ti8_64_bf16.txt" 2>&1
      bench "cpu_${k}_vit_s16_bf16.json" --preset vit_s16 --batch 16 --precision bf16 --steps 2 --repeats 3
      # RILS's extra memory with its masked branch checkpointed (model.masked_grad_checkpointing)
      bench "cpu_${k}_vit_ti8_64_fp32_masked_grad_checkpointing.json" --preset vit_ti8_64 --batch 64 --precision fp32 \
        --steps 3 --repeats 4 --masked-grad-checkpointing
      bench "cpu_${k}_vit_ti8_64_bf16_masked_grad_checkpointing.json" --preset vit_ti8_64 --batch 64 --precision bf16 \
        --steps 3 --repeats 4 --masked-grad-checkpointing
      # torch.compile: speed-up and compile time, then whether a compiled run resumes exactly
      [ -f "$OUT/compile_${k}_vit_ti8_64.json" ] || \
        $PY -m rils bench --compile-ratio --preset vit_ti8_64 --batch 64 --precision fp32 --steps 3 --repeats 4 \
          --out "$OUT/compile_${k}_vit_ti8_64.json"
      [ -f "$OUT/compile_${k}_vit_ti8_64_bf16.json" ] || \
        $PY -m rils bench --compile-ratio --preset vit_ti8_64 --batch 64 --precision bf16 --steps 3 --repeats 4 \
          --out "$OUT/compile_${k}_vit_ti8_64_bf16.json"
      [ -f "$OUT/compile_check.json" ] || $PY benchmarks/perf/compile_check.py clip rils
    fi
  done
done
$PY benchmarks/perf/tables.py
