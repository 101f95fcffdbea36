"""What running the text tower on real captions' padding costs: the same training step
(`rils.bench.RilsStep`, which calls `train_step`) on a batch of real captions, with the padding after
the batch's longest caption dropped (the default on a CPU, `rils.model.text.used_length`) and with the
whole context run, interleaved repetition by repetition, one process. Images are random (their
content does not change the step's cost); the captions are the corpus's own, tokenised as training
tokenises them. Prints and writes each method's median ratio trimmed/full with a bootstrap 95 %
interval, and the batch's caption lengths.

    python benchmarks/perf/text_padding_cost.py PRESET BATCH PRECISION CORPUS [REPEATS] > benchmarks/perf/results/FILE.json

CORPUS: `demo` (the demo's shapes captions) or `openclipart` (data/realdata/openclipart.csv, which
benchmarks/studies/realdata/run.sh prepares from the Debian packages).
"""
import csv
import json
import random
import sys
from contextlib import nullcontext
from unittest.mock import patch

import torch
from interleaved import interleaved_times

import rils.model.text as text_tower
from rils.bench import RilsStep, _batch, cpu_isa, source_commit
from rils.presets import get_preset


def captions(corpus: str, n: int) -> list[str]:
    if corpus == "demo":
        from rils.data.demo import DemoShapes
        return [item["caption"] for item in (DemoShapes("train", num_samples=n)[i] for i in range(n))]
    if corpus == "openclipart":
        with open("data/realdata/openclipart.csv", newline="") as f:
            rows = [row["caption"] for row in csv.DictReader(f)]
        return random.Random(0).sample(rows, n)
    raise SystemExit(f"corpus must be demo or openclipart, got {corpus!r}")


def main(preset="vit_ti8_32", batch="64", precision="bf16", corpus="demo", repeats="12", steps=3, warmup=2):
    batch, repeats = int(batch), int(repeats)
    dev = torch.device("cpu")
    torch.manual_seed(0)
    full = lambda: patch.object(text_tower, "used_length", lambda eot, length: length)   # noqa: E731
    report = {"preset": preset, "batch": batch, "precision": precision, "corpus": corpus, "isa": cpu_isa(),
              "commit": source_commit(), "steps": steps, "repeats": repeats, "methods": {}}
    tokens = text_tower.get_tokenizer(get_preset(preset).context_length)(captions(corpus, batch))
    lengths = (tokens.argmax(dim=-1) + 1).tolist()   # tokens up to and with the EOT token
    for method in ("clip", "rils"):
        step = RilsStep(method, preset, dev, precision=precision)
        data = {**_batch(step.preset, batch, dev, views=step.views), "text": tokens}
        times, ci = interleaved_times(step, data, dev, {"trimmed": nullcontext, "full": full}, repeats, steps, warmup)
        report["methods"][method] = {"trimmed_over_full_step_time": ci, "step_times_s": times}
        print(f"{method}: trimmed / full step time {ci['median']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]",
              file=sys.stderr)
    report["caption_tokens"] = {"context_length": int(tokens.shape[1]), "longest": max(lengths),
                                "median": sorted(lengths)[len(lengths) // 2]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
