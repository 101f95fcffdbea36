#!/usr/bin/env bash
# `make demo` as a new user runs it: a fresh clone, a fresh venv (torch from the local wheel or
# TORCH_SPEC), the demo; wall times of the install and of the demo go to
# benchmarks/studies/demo/results/demo_timing_<KIND>.json with the demo's results.json.
#   benchmarks/studies/demo/timing.sh native   # this CPU as it is
#   benchmarks/studies/demo/timing.sh avx2     # this CPU capped to AVX2 (aten, MKL, oneDNN): a laptop without bf16
set -euo pipefail
KIND=${1:-native}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=$(mktemp -d /tmp/rils-demo-timing.XXXXXX)
# the working tree as it is (tracked and untracked, not ignored files), as a fresh clone would hold it
mkdir -p "$WORK/rils"
(cd "$REPO" && git ls-files -z -co --exclude-standard | xargs -0 -I{} cp --parents -P {} "$WORK/rils/")
cd "$WORK/rils"
if [ "$KIND" = avx2 ]; then
  export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
fi
t0=$(date +%s.%N)
make install > "$WORK/install.log" 2>&1
t1=$(date +%s.%N)
make demo > "$WORK/demo.log" 2>&1
t2=$(date +%s.%N)
python3 - "$REPO/benchmarks/studies/demo/results/demo_timing_$KIND.json" "$KIND" "$t0" "$t1" "$t2" runs/demo/results.json "$WORK/demo.log" <<'PY'
import json, subprocess, sys
out, kind, t0, t1, t2, results, log = sys.argv[1:]
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
flags = subprocess.run(["sh", "-c", "grep -o -w -E 'avx512_bf16|amx_bf16|avx2' /proc/cpuinfo | sort -u | tr '\\n' ' '"],
                       capture_output=True, text=True).stdout.strip()
lines = open(log).read().splitlines()
record = {"kind": kind, "cpu": cpu, "cpu_flags": flags, "cores": 2,
          "install_seconds": round(float(t1) - float(t0), 1), "demo_seconds": round(float(t2) - float(t1), 1),
          "total_seconds": round(float(t2) - float(t0), 1),
          "first_log_line": next((ln for ln in lines if ln.startswith("[rils]")), None),
          "results": json.load(open(results))}
json.dump(record, open(out, "w"), indent=2)
print(json.dumps({k: v for k, v in record.items() if k != "results"}, indent=1))
PY
