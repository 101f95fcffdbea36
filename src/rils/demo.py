"""`rils demo` (what `make demo` runs): pre-train RILS on the embedded shapes corpus, then score it
zero-shot and in retrieval on the held-out split, print a table and write results.json."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .train.config import load_config
from .train.engine import train

TASKS = ("shape", "color")


def run_demo(out: str, overrides: list[str]) -> int:
    from .eval import load_for_eval, run_protocol

    out_dir = Path(out)
    cfg = load_config("demo", [f"output_dir={out_dir}", *overrides])
    t0 = time.time()
    ckpt = train(cfg)
    train_minutes = (time.time() - t0) / 60

    loaded = load_for_eval(ckpt)
    extract = dict(use_cache=False, progress=False, num_workers=0)
    zs = {task: run_protocol(loaded, "zeroshot", "demo-shapes", split="val",
                             dataset_options={"task": task}, extract=extract) for task in TASKS}
    ret = run_protocol(loaded, "retrieval", "demo-shapes", split="val", extract=extract)

    per_task = {t: {"top1": r["metrics"]["top1"], "chance": 1.0 / r["num_classes"]} for t, r in zs.items()}
    last = json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[-1])
    results = {
        # mean over the two zero-shot tasks (kind of the largest shape, and its colour)
        "zeroshot_top1": sum(v["top1"] for v in per_task.values()) / len(per_task),
        "zeroshot_chance": sum(v["chance"] for v in per_task.values()) / len(per_task),
        "zeroshot": per_task,
        "retrieval_i2t_r1": ret["metrics"]["image_to_text_R@1"],
        "retrieval_t2i_r1": ret["metrics"]["text_to_image_R@1"],
        "retrieval": ret["metrics"],
        "retrieval_images": ret.get("num_images"),
        "train": {"method": cfg.method, "preset": cfg.model.preset, "steps": last["step"],
                  "final_loss": last["loss"], "final_i2t_acc": last.get("i2t_acc"),
                  "minutes": round(train_minutes, 2)},
        "checkpoint": str(ckpt),
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    rows = [("zero-shot top-1, shape kind", per_task["shape"]["top1"], per_task["shape"]["chance"]),
            ("zero-shot top-1, colour", per_task["color"]["top1"], per_task["color"]["chance"]),
            ("zero-shot top-1, mean", results["zeroshot_top1"], results["zeroshot_chance"]),
            ("retrieval image->text R@1", results["retrieval_i2t_r1"], None),
            ("retrieval text->image R@1", results["retrieval_t2i_r1"], None)]
    print(f"\nRILS on the demo corpus: {last['step']} steps, {train_minutes:.1f} min; held-out split\n")
    print(f"| {'metric':30s} | {'value':>6s} | {'chance':>6s} |\n|{'-' * 32}|{'-' * 8}|{'-' * 8}|")
    for name, value, chance in rows:
        print(f"| {name:30s} | {value:6.3f} | {'' if chance is None else f'{chance:6.3f}':>6s} |")
    print(f"\nwrote {out_dir / 'results.json'}")
    return 0
