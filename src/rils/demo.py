"""`rils demo` (what `make demo` runs): pre-train RILS on the embedded shapes corpus, then score it on
the held-out split (zero-shot shape kind and colour, retrieval, zero-shot patch segmentation of
colours), draw the training curves and a language semantic map, print a table, write results.json."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .train.config import load_config
from .train.engine import train

TASKS = ("shape", "color")
MAP_IMAGES = 6   # held-out images in semantic_map.png


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def all_background_miou(patchseg: dict) -> float:
    """The mIoU of labelling every pixel background: the floor a segmentation must beat."""
    confusion = patchseg["confusion_matrix"]            # rows: true class, background first
    total = sum(map(sum, confusion))
    return sum(confusion[0]) / total / len(confusion)


def run_demo(out: str, overrides: list[str]) -> int:
    from .eval import load_for_eval

    out_dir = Path(out)
    # A second `make demo` starts over; the earlier run is moved aside (runs/demo.old-<time>), not deleted.
    again = [] if any(o.startswith(("resume=", "overwrite=")) for o in overrides) else ["overwrite=true"]
    cfg = load_config("demo", [f"output_dir={out_dir}", *again, *overrides])
    t0 = time.time()
    ckpt = train(cfg)
    train_minutes = (time.time() - t0) / 60

    t1 = time.time()
    loaded = load_for_eval(ckpt)
    results = score_on_shapes(loaded)
    seg = results.pop("_patchseg")
    _say("drawing curves.png and semantic_map.png ...")
    pictures = _pictures(out_dir, loaded.model, seg)
    eval_minutes = (time.time() - t1) / 60

    per_task = results["zeroshot"]
    last = json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[-1])
    results.update({
        "train": {"method": cfg.method, "preset": cfg.model.preset, "steps": last["step"],
                  "final_loss": last["loss"], "final_i2t_acc": last.get("i2t_acc"),
                  "minutes": round(train_minutes, 2), "precision": results.pop("precision")},
        "eval_minutes": round(eval_minutes, 2),
        "pictures": pictures,
        "checkpoint": str(ckpt),
    })
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    rows = [("zero-shot top-1, shape kind", per_task["shape"]["top1"], per_task["shape"]["chance"]),
            ("zero-shot top-1, colour", per_task["color"]["top1"], per_task["color"]["chance"]),
            ("zero-shot top-1, mean", results["zeroshot_top1"], results["zeroshot_chance"]),
            ("retrieval image->text R@1", results["retrieval_i2t_r1"], results["retrieval_chance_r1"]),
            ("retrieval text->image R@1", results["retrieval_t2i_r1"], results["retrieval_chance_r1"]),
            ("colour patch segmentation mIoU", results["patchseg_color_miou"],
             results["patchseg_color_all_background_miou"])]
    print(f"\nRILS on the demo corpus: {last['step']} steps, {train_minutes:.1f} min training, "
          f"{eval_minutes:.1f} min evaluation; held-out split\n")
    print(f"| {'metric':30s} | {'value':>6s} | {'chance':>6s} |\n|{'-' * 32}|{'-' * 8}|{'-' * 8}|")
    for name, value, chance in rows:
        print(f"| {name:30s} | {value:6.3f} | {'' if chance is None else f'{chance:6.3f}':>6s} |")
    print("\n(chance of the segmentation: every pixel labelled background)")
    print(f"pictures: {', '.join(str(out_dir / p) for p in pictures.values())}")
    print(f"wrote {out_dir / 'results.json'}")
    return 0


def score_on_shapes(loaded, linear: bool = False, precision: str = "auto", linear_train_samples: int = 5000,
                    val_samples: int | None = None) -> dict:
    """The held-out scores of the shapes corpus: zero-shot top-1 by shape kind and by colour (and
    their mean), retrieval R@1 both ways, zero-shot colour patch segmentation (mIoU next to the
    all-background floor); with `linear`, a linear probe of the shape kind (`linear_train_samples` train images -> held-out),
    the only one of these a model without a text tower gets; `val_samples`: fewer held-out images
    (None: the whole split, 1,000). The patchseg record rides along under
    "_patchseg" for the pictures."""
    from .eval import run_protocol

    extract = dict(use_cache=False, progress=False, num_workers=0)
    demo = {"image_size": 64, "seed": 0, **({"num_samples": val_samples} if val_samples else {})}
    results: dict = {}
    if linear:
        _say("linear probe of the shape kind (train split -> held-out) ...")
        lin = run_protocol(loaded, "linear", "demo-shapes", split="val", precision=precision, num_train_samples=linear_train_samples,
                           dataset_options={"task": "shape", **demo}, extract=extract)
        results.update(linear_top1=lin["metrics"]["top1"], linear=lin["metrics"],
                       linear_train_samples=lin.get("num_train"), precision=lin["precision"])
    if loaded.tokenizer is None:
        return results
    zs = {}
    for task in TASKS:
        _say(f"zero-shot classification of the held-out split by {task} ...")
        zs[task] = run_protocol(loaded, "zeroshot", "demo-shapes", split="val", precision=precision,
                                dataset_options={"task": task, **demo}, extract=extract)
    _say("image-text retrieval on the held-out split ...")
    ret = run_protocol(loaded, "retrieval", "demo-shapes", split="val", precision=precision,
                       dataset_options=demo, extract=extract)
    _say("zero-shot patch segmentation of colours on the held-out split ...")
    seg = run_protocol(loaded, "patchseg", "demo-shapes", split="val", precision=precision,
                       dataset_options={"task": "color", **demo}, extract=extract)
    per_task = {t: {"top1": r["metrics"]["top1"], "chance": 1.0 / r["num_classes"]} for t, r in zs.items()}
    results.update({
        # mean over the two zero-shot tasks (kind of the largest shape, and its colour)
        "zeroshot_top1": sum(v["top1"] for v in per_task.values()) / len(per_task),
        "zeroshot_chance": sum(v["chance"] for v in per_task.values()) / len(per_task),
        "zeroshot": per_task,
        "retrieval_i2t_r1": ret["metrics"]["image_to_text_R@1"],
        "retrieval_t2i_r1": ret["metrics"]["text_to_image_R@1"],
        "retrieval": ret["metrics"],
        "retrieval_images": ret.get("num_images"),
        "retrieval_chance_r1": 1.0 / ret["num_images"] if ret.get("num_images") else None,
        "patchseg_color_miou": seg["metrics"]["miou"],
        "patchseg_color_all_background_miou": all_background_miou(seg),
        "patchseg_color": {"metrics": seg["metrics"], "per_class_iou": seg["per_class_iou"], "tau": seg["tau"]},
        "precision": zs["shape"]["precision"],
        "_patchseg": seg,
    })
    return results


def _pictures(out_dir: Path, model, seg: dict) -> dict:
    """curves.png (losses, accuracy, lr) and semantic_map.png (held-out images, colour classes)."""
    from .data.demo import DemoShapes
    from .eval.patchseg import class_prompts
    from .viz import plot_curves, semantic_map_grid

    plot_curves(out_dir, out_dir / "curves.png")
    classes = seg["classnames"]
    prompts = class_prompts(classes, seg["prompts"]["templates"], seg["prompts"]["background"])
    val = DemoShapes("val")
    semantic_map_grid(model, [val[i]["image"] for i in range(MAP_IMAGES)], classes, prompts,
                      out=out_dir / "semantic_map.png", tau=seg["tau"])
    return {"curves": "curves.png", "semantic_map": "semantic_map.png"}
