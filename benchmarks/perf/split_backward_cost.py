"""Time cost of RILS's split backward: the same RILS training step (`rils.bench.RilsStep`, which calls
`train_step`) with the split on (the default) and off, interleaved repetition by repetition, one
process; prints and writes the median ratio split/plain with a bootstrap 95 % interval. Memory is not
measured here (`rils bench` measures it in fresh processes).

    python benchmarks/perf/split_backward_cost.py PRESET BATCH PRECISION [REPEATS] > benchmarks/perf/results/FILE.json
"""
import json
import sys
from contextlib import nullcontext
from unittest.mock import patch

import torch
from interleaved import interleaved_times

from rils.bench import RilsStep, _batch, cpu_isa, source_commit
from rils.methods.rils import RILS


def main(preset="vit_ti8_32", batch="64", precision="bf16", repeats="12", steps=3, warmup=2):
    batch, repeats = int(batch), int(repeats)
    dev = torch.device("cpu")
    torch.manual_seed(0)
    step = RilsStep("rils", preset, dev, precision=precision)
    data = _batch(step.preset, batch, dev, views=False)
    plain = lambda: patch.object(RILS, "split_backward", lambda self: False)   # noqa: E731
    times, ci = interleaved_times(step, data, dev, {"split": nullcontext, "plain": plain}, repeats, steps, warmup)
    report = {"preset": preset, "batch": batch, "precision": precision, "isa": cpu_isa(), "commit": source_commit(),
              "steps": steps, "repeats": repeats, "split_over_plain_step_time": ci, "step_times_s": times}
    print(f"split / plain step time: {ci['median']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]", file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
