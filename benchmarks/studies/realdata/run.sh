#!/usr/bin/env bash
# The real-data testbed (docs/RESULTS.md): every method with `rils pretrain -c realdata method=M
# seed=S` (openclipart + Fashion-MNIST train from one globally shuffled CSV, batches free of identical
# captions), scored by benchmarks/studies/compare/eval.py (Fashion-MNIST zero-shot, linear, few-shot;
# openclipart retrieval). metrics.jsonl and scores are kept in benchmarks/studies/realdata/results/NAME.* as each
# run finishes; runs whose scores exist are skipped, so the study resumes where it stopped.
# Needs the Debian packages dataset-fashion-mnist, openclipart-png and openclipart-svg.
#   benchmarks/studies/realdata/run.sh [NAME ...]     (default: all, in order; NAME = METHOD_sSEED)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/realdata}
RES=${RES:-benchmarks/studies/realdata/results}
mkdir -p "$RUNS" "$RES"

[ -f data/openclipart/manifest.json ] || $PY -m rils data prepare openclipart --out data/openclipart
[ -f data/fashion-mnist/manifest.json ] || $PY -m rils data prepare fashion-mnist --out data/fashion-mnist
[ -f data/openclipart/val.csv ] || $PY -m rils data shards-to-csv 'data/openclipart/val/{00000..00000}.tar' data/openclipart/val.csv
if [ ! -f data/realdata/train.csv ]; then   # one CSV of both train sets: a map-style, globally shuffled source
  $PY -m rils data shards-to-csv 'data/openclipart/train/{00000..00006}.tar' data/realdata/openclipart.csv
  $PY -m rils data shards-to-csv 'data/fashion-mnist/train/{00000..00059}.tar' data/realdata/fashion-mnist.csv
  { cat data/realdata/openclipart.csv; tail -n +2 data/realdata/fashion-mnist.csv; } > data/realdata/train.csv.tmp
  mv data/realdata/train.csv.tmp data/realdata/train.csv
fi

ORDER=()
for m in clip rils mae_clip slip mae rils_prototypes; do ORDER+=("${m}_s0"); done
for s in 1 2; do for m in clip rils mae_clip; do ORDER+=("${m}_s$s"); done; done

names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
for name in "${names[@]}"; do
  method=${name%_s*}; seed=${name##*_s}
  [ -f "$RES/$name.json" ] && { echo "skip $name (done)"; continue; }
  t0=$(date +%s)
  $PY -m rils pretrain -c realdata method="$method" seed="$seed" output_dir="$RUNS/$name" resume=latest \
    > "$RUNS/$name.log" 2>&1 || { echo "$name failed: see $RUNS/$name.log"; exit 1; }
  cp "$RUNS/$name/metrics.jsonl" "$RES/$name.metrics.jsonl"
  RILS_CACHE=$RUNS/cache $PY benchmarks/studies/compare/eval.py "$RUNS/$name/checkpoints/latest.pt" "$RES/$name.json.tmp" \
    2>> "$RUNS/$name.log"
  $PY - "$RES/$name.json.tmp" "$method" "$seed" "$(( $(date +%s) - t0 ))" <<'PY'
import json, sys
path, method, seed, seconds = sys.argv[1:]
d = json.load(open(path))
d.update(method=method, seed=int(seed), pretrain_and_eval_seconds=int(seconds))
json.dump(d, open(path, "w"), indent=2)
PY
  mv "$RES/$name.json.tmp" "$RES/$name.json"
  echo "$name done"
done
