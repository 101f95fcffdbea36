"""Time cost of RILS's split backward: the same RILS training step (`rils.bench.RilsStep`, which calls
`train_step`) with the split on (the default) and off, interleaved repetition by repetition, one
process; prints and writes the median ratio split/plain with a bootstrap 95 % interval. Memory is not
measured here (`rils bench` measures it in fresh processes).

    python benchmarks/split_backward_cost.py PRESET BATCH PRECISION [REPEATS] > benchmarks/results/FILE.json
"""
import json
import sys

import torch

from rils.bench import RilsStep, _batch, _timed, cpu_isa, ratio_interval, source_commit
from rils.methods.rils import RILS


def main(preset="vit_ti8_32", batch="64", precision="bf16", repeats="12", steps=3, warmup=2):
    batch, repeats = int(batch), int(repeats)
    dev = torch.device("cpu")
    torch.manual_seed(0)
    step = RilsStep("rils", preset, dev, precision=precision)
    data = _batch(step.preset, batch, dev, views=False)
    real = RILS.split_backward
    times = {"split": [], "plain": []}

    def run(kind, n):
        RILS.split_backward = real if kind == "split" else (lambda self: False)
        try:
            return _timed(step, data, dev, n)
        finally:
            RILS.split_backward = real

    for kind in times:
        run(kind, warmup)
    for r in range(repeats):
        for kind in (("split", "plain") if r % 2 == 0 else ("plain", "split")):
            times[kind].append(run(kind, steps))
    ci = ratio_interval(times["split"], times["plain"])
    report = {"preset": preset, "batch": batch, "precision": precision, "isa": cpu_isa(), "commit": source_commit(),
              "steps": steps, "repeats": repeats, "split_over_plain_step_time": ci, "step_times_s": times}
    print(f"split / plain step time: {ci['median']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]", file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
