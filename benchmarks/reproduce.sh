#!/usr/bin/env bash
# Re-runs the comparison of docs/RESULTS.md: prepare the corpora, pre-train every method with the
# same recipe (configs/compare.yaml), evaluate each checkpoint, and rebuild the tables and plots.
# About 75 minutes on 2 CPU cores for the comparison; the testbeds after it take several hours. Outputs: runs/compare/<method>_s<seed>/ (checkpoints, metrics.jsonl)
# and docs/results/ (the JSON and jsonl files the tables are generated from; kept in the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=runs/compare
RES=docs/results
mkdir -p "$RUNS" "$RES"

[ -f data/openclipart/manifest.json ] || $PY -m rils data prepare openclipart --out data/openclipart
[ -f data/fashion-mnist/manifest.json ] || $PY -m rils data prepare fashion-mnist --out data/fashion-mnist
[ -f data/openclipart/val.csv ] || $PY benchmarks/shards_to_csv.py 'data/openclipart/val/{00000..00000}.tar' data/openclipart/val.csv

run() {  # method seed
  local name="$1_s$2" t0
  if [ ! -f "$RES/$name.eval.json" ]; then
    t0=$(date +%s)
    $PY -m rils pretrain -c compare method="$1" seed="$2" output_dir="$RUNS/$name" resume=latest
    echo "{\"method\": \"$1\", \"seed\": $2, \"pretrain_seconds\": $(( $(date +%s) - t0 ))}" > "$RES/$name.time.json"
    cp "$RUNS/$name/metrics.jsonl" "$RES/$name.metrics.jsonl"
    RILS_CACHE=$RUNS/cache $PY benchmarks/compare_eval.py "$RUNS/$name/checkpoints/latest.pt" "$RES/$name.eval.json"
  fi
}

# one seed of every method first, then the extra seeds of the three the paper's claims hinge on
for m in clip rils mae_clip mae slip rils_prototypes; do run "$m" 0; done
for s in 1 2; do for m in clip rils mae_clip; do run "$m" "$s"; done; done
$PY benchmarks/make_results.py

# the testbeds of issue 13 (each resumable: runs whose JSON exists are skipped)
benchmarks/two_stage.sh                      # Table 9's layout; its seed-0 clip/rils/mae runs seed the shapes study
benchmarks/shapes_study.sh                   # the pre-registered study (docs/results/shapes/)
$PY benchmarks/shapes_verdict.py --json docs/results/shapes/verdicts.json
benchmarks/realdata_study.sh                 # the real-data testbed (docs/results/realdata/)
$PY benchmarks/realdata_table.py
