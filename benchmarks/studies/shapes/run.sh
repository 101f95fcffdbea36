#!/usr/bin/env bash
# The pre-registered comparison on the shapes testbed (docs/RESULTS.md, "Pre-registered"): every run
# is `rils pretrain -c shapes method=M seed=S` (plus an ablation's override), scored by
# benchmarks/studies/shapes_eval.py; metrics.jsonl and scores are kept in benchmarks/studies/shapes/results/NAME.* as each
# run finishes. Runs whose scores exist are skipped, so the study resumes where it stopped (about
# 8 minutes per run on 2 idle cores; the order below puts the primary endpoints' runs first).
# The seed-0 runs of clip, rils and mae are the ones benchmarks/studies/two_stage/run.sh made (same recipe and
# seed), copied rather than trained again. Then: python benchmarks/studies/shapes/verdict.py
#   benchmarks/studies/shapes/run.sh [NAME ...]     (default: all, in order)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/shapes}
RES=${RES:-benchmarks/studies/shapes/results}
mkdir -p "$RUNS" "$RES"

declare -A OVERRIDES
ORDER=()
add() { ORDER+=("$1"); OVERRIDES[$1]="$2"; }
for s in 0 1 2 3 4; do
  for m in clip rils mae_clip; do add "${m}_s$s" "method=$m seed=$s"; done
done
for s in 0 1; do
  for m in slip mae rils_prototypes; do add "${m}_s$s" "method=$m seed=$s"; done
done
add rils_lambda0.25_s0 "method=rils seed=0 loss.lambda_recon=0.25"
add rils_lambda1.0_s0 "method=rils seed=0 loss.lambda_recon=1.0"
add rils_prototypes_not_detached_s0 "method=rils seed=0 loss.detach_prototypes=false"

names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
for name in "${names[@]}"; do
  [ -n "${OVERRIDES[$name]:-}" ] || { echo "unknown run $name"; exit 2; }
  [ -f "$RES/$name.json" ] && { echo "skip $name (done)"; continue; }
  base=${name%_s0}
  if [ "$base" != "$name" ] && [ -f "benchmarks/studies/two_stage/results/$base.json" ] && [[ " clip rils mae " == *" $base "* ]]; then
    cp "benchmarks/studies/two_stage/results/$base.json" "$RES/$name.json"
    cp "benchmarks/studies/two_stage/results/$base.metrics.jsonl" "$RES/$name.metrics.jsonl"
    echo "$name: taken from benchmarks/studies/two_stage/results/$base.json"; continue
  fi
  t0=$(date +%s)
  # shellcheck disable=SC2086
  $PY -m rils pretrain -c shapes output_dir="$RUNS/$name" resume=latest ${OVERRIDES[$name]} > "$RUNS/$name.log" 2>&1 \
    || { echo "$name failed: see $RUNS/$name.log"; exit 1; }
  cp "$RUNS/$name/metrics.jsonl" "$RES/$name.metrics.jsonl"
  $PY benchmarks/studies/shapes_eval.py "$RUNS/$name/checkpoints/latest.pt" "$RES/$name.json" name="$name" \
    pretrain_seconds="$(( $(date +%s) - t0 ))" overrides="${OVERRIDES[$name]}" 2>> "$RUNS/$name.log"
  echo "$name done"
done
