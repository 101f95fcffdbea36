"""Evaluate one pre-trained checkpoint with the protocols of the comparison (docs/RESULTS.md):
zero-shot (Fashion-MNIST test), linear probe and few-shot (Fashion-MNIST), retrieval (openclipart val).
Writes one JSON file. Usage: compare_eval.py CKPT OUT.json [--retrieval-csv data/openclipart/val.csv]"""
import argparse
import json
import time

import numpy as np

from rils.eval import (evaluate_fewshot, evaluate_linear, evaluate_retrieval, evaluate_zeroshot,
                       load_dataset, load_for_eval)
from rils.eval.datasets import Subset

LINEAR_TRAIN = 10_000   # a fixed, class-balanced subset of Fashion-MNIST train, the same for every model


def _jsonable(x):
    return x.tolist() if hasattr(x, "tolist") else float(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--retrieval-csv", default="data/openclipart/val.csv")
    args = ap.parse_args()
    t0 = time.time()
    loaded = load_for_eval(args.checkpoint)
    m, tok, tf = loaded.model, loaded.tokenizer, loaded.transform
    extract = dict(model_id=loaded.model_id, progress=False, num_workers=0, batch_size=256)
    test = load_dataset("fashion-mnist", "test")
    train = load_dataset("fashion-mnist", "train")
    rng = np.random.default_rng(0)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(train.labels == c), LINEAR_TRAIN // 10, replace=False)
                                  for c in range(10)]))
    out = {"checkpoint": args.checkpoint, "method": getattr(m, "method", None)}
    if tok is not None:
        out["zeroshot"] = evaluate_zeroshot(m, tok, tf, test, precision="auto", **extract)["metrics"]
        ret = evaluate_retrieval(m, tok, tf, load_dataset(args.retrieval_csv, "val", kind="retrieval"),
                                 precision="auto", **extract)
        out["retrieval"] = ret["metrics"]
    # The probe's defaults (docs/RESULTS.md, "Probes since 2026-11-29"): SGD at batch 1024, >= 90 epochs and 1,000 steps, lr swept on held-out train.
    lin = evaluate_linear(m, tf, Subset(train, idx), test, precision="auto", progress=False,
                          **{k: v for k, v in extract.items() if k != "progress"})
    out["linear"] = lin
    few = evaluate_fewshot(m, tf, train, test, precision="auto", seeds=3, **extract)
    out["fewshot"] = few
    out["eval_seconds"] = round(time.time() - t0, 1)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2, default=_jsonable)
    print(json.dumps({k: v for k, v in out.items() if k != "fewshot"}, indent=1, default=_jsonable)[:1500])


if __name__ == "__main__":
    main()
