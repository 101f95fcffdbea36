"""Score a checkpoint on the shapes testbed's held-out split (rils.demo.score_on_shapes, with the
linear probe of the shape kind) and write the JSON: `shapes_eval.py CKPT OUT.json [key=value ...]`
(extra key=value pairs are stored as they are, e.g. the run's name and its stages)."""
import json
import os
import sys
import time

from rils.demo import score_on_shapes
from rils.eval import load_for_eval


def main(ckpt: str, out: str, *extra: str) -> None:
    t0 = time.time()
    # SHAPES_EVAL_TRAIN_SAMPLES: fewer linear-probe train images (the scripts' tiny CPU paths),
    # and SHAPES_EVAL_VAL_SAMPLES fewer held-out ones
    train_samples = int(os.environ.get("SHAPES_EVAL_TRAIN_SAMPLES", 5000))
    val_samples = int(os.environ.get("SHAPES_EVAL_VAL_SAMPLES", 0)) or None
    results = score_on_shapes(load_for_eval(ckpt), linear=True, linear_train_samples=train_samples,
                              val_samples=val_samples)
    results.pop("_patchseg", None)
    results.update(checkpoint=ckpt, eval_seconds=round(time.time() - t0, 1))
    results.update(dict(kv.split("=", 1) for kv in extra))
    with open(out, "w") as fh:
        json.dump(results, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
