# The second round's fine-tuning recipe (docs/RESULTS.md, "Pre-registered, second round: dense
# transfer and budget"), in one place: sourced by run.sh (the study) and by
# benchmarks/studies/shapes/gpu_repro.sh (the GPU check beside it). The step budgets and the testbed
# split can be shrunk from the environment (the tests' tiny paths); nothing else changes them.
SEG_STEPS=${SEG_STEPS:-600} DET_STEPS=${DET_STEPS:-300} LOWSHOT_STEPS=${LOWSHOT_STEPS:-300}
PREP=${PREP:---train 600 --val 300}   # the testbed split (rils data prepare shapes-dense)
SEG_RECIPE=(--steps "$SEG_STEPS" --batch 16 --warmup-steps $(( SEG_STEPS / 10 )) --head-channels 64 --lr 1e-3
            --layer-decay 0.75)
# detection and low-shot detection differ only in steps and the fraction of training images
_DET=(--batch 8 --fpn-channels 64 --box-head-dim 256 --rpn-batch 64 --roi-batch 128 --proposals 200 --lr 4e-4)
DETECT_RECIPE=("${_DET[@]}" --steps "$DET_STEPS" --warmup-steps $(( DET_STEPS / 10 )))
LOWSHOT_RECIPE=("${_DET[@]}" --steps "$LOWSHOT_STEPS" --warmup-steps $(( LOWSHOT_STEPS / 10 )) --train-fraction 0.1)
