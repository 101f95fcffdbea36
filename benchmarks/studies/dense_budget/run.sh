#!/usr/bin/env bash
# The second registered study (docs/RESULTS.md, "Pre-registered, second round: dense transfer and
# budget"). For each run NAME = METHOD_STEPS_sSEED, in the registered order:
#   1. pre-train: rils pretrain -c shapes64 method=METHOD seed=SEED (2,400 steps: steps, samples and
#      warm-up scaled together), in pieces of at most PIECE_MIN minutes (SIGTERM saves a checkpoint,
#      resume=latest continues it);
#   2. the first study's endpoints on the held-out split (zero-shot, R@1, colour patch-seg, linear);
#   3. segmentation, detection and low-shot (10 %) detection fine-tuned on the shapes-dense testbed,
#      fixed budgets, the same recipe for every checkpoint, fine-tuning seed = pre-training seed
#      (the 2,400-step checkpoints' detection is secondary and runs after everything else).
# Each finished part writes results/NAME.<part>.json (and the pre-training's metrics.jsonl) and a line
# in results/log.jsonl (commit, seconds); a part whose file exists is skipped, so the study resumes
# where it stopped. Checkpoints stay in $RUNS (not kept). Then: python benchmarks/studies/dense_budget/verdict.py
#   benchmarks/studies/dense_budget/run.sh [NAME ...]     (default: every run, in order)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/dense_budget}
RES=${RES:-benchmarks/studies/dense_budget/results}
DATA=${DATA:-runs/shapes-dense-study}
PIECE_MIN=${PIECE_MIN:-20}
# shellcheck source=recipe.sh
source benchmarks/studies/dense_budget/recipe.sh   # the registered fine-tuning budgets, recipe and split
EXTRA=${EXTRA:-}          # extra pretrain overrides (tests only)
mkdir -p "$RUNS" "$RES"

# seed by seed, so every claim gets its paired seeds as early as possible; detection of the 2,400-step
# checkpoints is secondary (no claim reads it) and runs after every primary part
ORDER=()
for s in 0 1 2; do
  for m in clip rils mae_clip mae; do ORDER+=("${m}_600_s$s"); done
  for m in clip rils; do ORDER+=("${m}_2400_s$s"); done
done

logline() {  # name part seconds
  printf '{"name": "%s", "part": "%s", "seconds": %s, "commit": "%s", "finished": "%s"}\n' \
    "$1" "$2" "$3" "$(git describe --always --dirty)" "$(date -u +%FT%TZ)" >> "$RES/log.jsonl"
}

pretrain() {  # name method steps seed
  local name=$1 run=$RUNS/$1 overrides="method=$2 seed=$4"
  [ "$3" = 2400 ] && overrides+=" train.max_steps=2400 data.num_samples=153600 train.warmup_steps=240"
  [ -f "$run/.done" ] && return 0
  while :; do
    local rc=0
    # shellcheck disable=SC2086
    timeout -s TERM "${PIECE_MIN}m" $PY -m rils pretrain -c shapes64 output_dir="$run" resume=latest \
      $overrides $EXTRA >> "$RUNS/$name.log" 2>&1 || rc=$?
    case $rc in
      0) touch "$run/.done"; return 0 ;;
      124) echo "$name: piece of ${PIECE_MIN} min ended, continuing from its checkpoint" ;;
      *) echo "$name: pretrain failed ($rc), see $RUNS/$name.log"; exit 1 ;;
    esac
  done
}

finetune() {  # name protocol part seed extra...
  local name=$1 protocol=$2 part=$3 seed=$4; shift 4
  local out=$RES/$name.$part.json t0; t0=$(date +%s)
  [ -f "$out" ] && return 0
  $PY -m rils eval "$protocol" --checkpoint "$RUNS/$name/checkpoints/latest.pt" --device cpu \
    --num-workers 1 --size 64 --seed "$seed" "$@" --out "$out" >> "$RUNS/$name.$part.log" 2>&1 \
    || { echo "$name: $part failed, see $RUNS/$name.$part.log"; exit 1; }
  logline "$name" "$part" $(( $(date +%s) - t0 ))
  echo "$name $part done"
}

[ -f "$DATA/manifest.json" ] || $PY -m rils data prepare shapes-dense --out "$DATA" --image-size 64 $PREP --seed 0
detection() {  # name seed
  finetune "$1" detect detect "$2" --dataset "$DATA/coco" "${DETECT_RECIPE[@]}"
  finetune "$1" detect lowshot "$2" --dataset "$DATA/coco" "${LOWSHOT_RECIPE[@]}"
}

primary() {  # name: pre-training, the shapes endpoints, segmentation (and detection at 600 steps)
  local name=$1 seed=${1##*_s} rest=${1%_s*} steps method
  steps=${rest##*_}; method=${rest%_*}
  if [ -f "$RES/$name.metrics.jsonl" ] && [ ! -f "$RUNS/$name/checkpoints/latest.pt" ] && ! complete "$name"; then
    # the checkpoint is gone (a fresh machine) with parts still to do: every part of a run must come
    # from one checkpoint, so the run starts again from its seed and its kept parts are redone
    echo "$name: checkpoint lost with parts left; pre-training it again"
    rm -f "$RES/$name".*; logline "$name" checkpoint_lost_redo 0
    [ -d "$RUNS/$name" ] && mv "$RUNS/$name" "$RUNS/$name.lost-$(date +%s)"
  fi
  if [ ! -f "$RES/$name.metrics.jsonl" ]; then
    local t0; t0=$(date +%s); pretrain "$name" "$method" "$steps" "$seed"
    cp "$RUNS/$name/metrics.jsonl" "$RES/$name.metrics.jsonl"; logline "$name" pretrain $(( $(date +%s) - t0 ))
  fi
  if [ ! -f "$RES/$name.json" ]; then
    local t0; t0=$(date +%s)
    $PY benchmarks/studies/shapes_eval.py "$RUNS/$name/checkpoints/latest.pt" "$RES/$name.json.tmp" name="$name" \
      2>> "$RUNS/$name.log" && mv "$RES/$name.json.tmp" "$RES/$name.json"
    logline "$name" shapes_eval $(( $(date +%s) - t0 ))
  fi
  finetune "$name" segment segment "$seed" --dataset "$DATA/ade" "${SEG_RECIPE[@]}"
  [ "$steps" = 600 ] && detection "$name" "$seed"
  return 0
}

complete() {  # name: every part of the run is kept (detection counts for the 2,400-step runs too)
  local part
  for part in metrics.jsonl json segment.json detect.json lowshot.json; do [ -f "$RES/$1.$part" ] || return 1; done
}

names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
for name in "${names[@]}"; do
  [[ " ${ORDER[*]} " == *" $name "* ]] || { echo "unknown run $name"; exit 2; }
  primary "$name"
  echo "$name done"
done
for name in "${names[@]}"; do   # secondary: the 2,400-step checkpoints' detection, last
  [[ "$name" == *_2400_* ]] || continue
  complete "$name" && continue
  primary "$name"   # nothing to do unless its checkpoint was lost
  detection "$name" "${name##*_s}"
done
echo "all parts done"
