"""Does `train.compile=true` train the same model, and does a compiled run resume exactly?

Per method, on the demo recipe (small batch): run A compiled for STEPS steps with a checkpoint at
STEPS/2; run A2 the same as A again (is a compiled run repeatable at all?); run B compiled, resumed
from A's middle checkpoint in a fresh folder; run C eager. Exact resume holds when B's final weights
equal A's bit for bit; A2 against A says whether a difference comes from resuming or from compiled
training itself; C's per-step losses against A's show what compiling changes numerically.
Writes benchmarks/perf/results/compile_check.json.
Usage: python benchmarks/perf/compile_check.py [METHOD ...]   (default: clip rils)"""
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from rils.bench import _machine
from rils.precision import resolve_device, resolve_precision
from rils.train.config import load_config
from rils.train.engine import train

STEPS = 8
COMMON = ["train.batch_size=16", f"train.max_steps={STEPS}", f"train.checkpoint_every={STEPS // 2}",
          "train.log_every=1", "train.warmup_steps=2", "data.workers=0", "logging.tensorboard=false"]


def _run(out: Path, method: str, *extra: str) -> tuple[Path, float]:
    t = time.perf_counter()
    ckpt = train(load_config("demo", [*COMMON, f"method={method}", f"output_dir={out}", *extra]))
    return Path(ckpt), time.perf_counter() - t


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


def _weights(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def check(method: str, root: Path) -> dict:
    a, a_s = _run(root / "a", method, "train.compile=true")
    middle = root / "a" / "checkpoints" / f"step_{STEPS // 2:08d}.pt"
    a2, _ = _run(root / "a2", method, "train.compile=true")
    b, b_s = _run(root / "b", method, "train.compile=true", f"resume={middle}")
    c, c_s = _run(root / "c", method, "train.compile=false")
    wa, wb, wa2 = _weights(a), _weights(b), _weights(a2)
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    unrepeatable = [k for k in wa if not torch.equal(wa[k], wa2[k])]
    la, lc = _losses(root / "a"), _losses(root / "c")
    return {"exact_resume": not differ, "tensors_differing_after_resume": differ[:10],
            "repeatable": not unrepeatable, "tensors_differing_between_two_runs": unrepeatable[:10],
            "max_abs_weight_diff_after_resume": max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa),
            "compiled_losses": la, "eager_losses": lc,
            "max_abs_loss_diff_compiled_vs_eager": max(abs(x - y) for x, y in zip(la, lc)),
            "seconds": {"compiled_run": round(a_s, 1), "compiled_resumed_half": round(b_s, 1),
                        "eager_run": round(c_s, 1)}}


def main(methods: list[str]) -> None:
    dev = resolve_device("auto")
    out = {"recipe": "demo", "overrides": COMMON, "machine": _machine(dev), "torch": torch.__version__,
           "precision": resolve_precision("auto", dev)[0], "results": {}}
    for m in methods:
        with tempfile.TemporaryDirectory() as tmp:
            out["results"][m] = check(m, Path(tmp))
        print(m, json.dumps({k: v for k, v in out["results"][m].items() if not k.endswith("losses")}), flush=True)
    path = Path(__file__).with_name("results") / "compile_check.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["clip", "rils"])
