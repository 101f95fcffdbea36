"""Host-device synchronisations in one training step per method, on a CUDA device: each one makes
the host wait for the device, and a GPU's queue then runs dry while the host launches what follows.
Counted with torch.cuda.set_sync_debug_mode("warn") over one step after a warm-up step; the sites in
our code are printed with their counts. Writes JSON.

    python benchmarks/perf/cuda_syncs.py OUT.json [--preset vit_b16] [--batch 64] [--methods clip rils]
"""
import argparse
import collections
import json
import traceback
import warnings

import torch

from rils.bench import RilsStep, _batch


def syncs_of_one_step(method: str, preset: str, batch: int, precision: str = "bf16") -> dict:
    step = RilsStep(method, preset, "cuda", False, precision)
    data = _batch(step.preset, batch, "cuda", step.views)
    step(data)
    torch.cuda.synchronize()
    sites, others = collections.Counter(), []

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):      # another warning raised during the step
            others.append(str(message)[:200])
            return
        ours = [f"{fr.filename.split('/src/')[-1]}:{fr.lineno}" for fr in traceback.extract_stack()
                if "/rils/" in fr.filename and "cuda_syncs" not in fr.filename]
        if ours:
            sites[ours[-1]] += 1
        else:   # not under our code: name the innermost frames, to find where it comes from
            stack = [fr for fr in traceback.extract_stack()[:-1] if not fr.filename.endswith("warnings.py")]
            sites[" < ".join(f"{fr.filename.split('site-packages/')[-1]}:{fr.lineno}" for fr in stack[-4:][::-1])
                  or f"{filename}:{lineno}"] += 1

    saved = warnings.showwarning
    warnings.showwarning = record
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            step(data)
            torch.cuda.set_sync_debug_mode("default")
    finally:
        warnings.showwarning = saved
    return {"syncs": sum(sites.values()), "sites": dict(sites.most_common()), "other_warnings": others}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", default="vit_b16")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--methods", nargs="+", default=["clip", "rils"])
    a = ap.parse_args()
    report = {m: syncs_of_one_step(m, a.preset, a.batch) for m in a.methods}
    report["preset"], report["batch"], report["torch"] = a.preset, a.batch, torch.__version__
    with open(a.out, "w") as fh:
        json.dump(report, fh, indent=1)
    for m in a.methods:
        print(f"{m}: {report[m]['syncs']} host syncs per step: {report[m]['sites']}")


if __name__ == "__main__":
    main()
