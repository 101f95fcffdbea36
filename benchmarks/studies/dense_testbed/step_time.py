"""Seconds per training step of `rils eval segment` and `rils eval detect` on the CPU testbed
(docs/PERFORMANCE.md, "Dense fine-tuning"): the settings of benchmarks/studies/dense_testbed/run.sh, a
short fine-tune of each protocol per repetition, protocols interleaved, the median of the loop's
per-step medians over the repetitions. Evaluation is cut to one image per protocol (not timed).

    python benchmarks/studies/dense_testbed/step_time.py --checkpoint runs/demo/checkpoints/latest.pt \
        --data runs/shapes-dense --out benchmarks/studies/dense_testbed/results/step_time.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SEGMENT = ["--batch", "16", "--warmup-steps", "5", "--head-channels", "64", "--lr", "1e-3", "--layer-decay", "0.75"]
DETECT = ["--batch", "8", "--warmup-steps", "5", "--fpn-channels", "64", "--box-head-dim", "256", "--rpn-batch", "64",
          "--roi-batch", "128", "--proposals", "200", "--lr", "4e-4"]


def _one_image_val(data: Path, tmp: Path) -> dict:
    """A copy of the testbed's layouts whose validation split is one image (evaluation is not timed)."""
    ade = tmp / "ade"
    for part in ("images", "annotations"):
        (ade / part / "validation").mkdir(parents=True)
        (ade / part / "training").symlink_to((data / "ade" / part / "training").resolve(), target_is_directory=True)
    (ade / "images" / "validation" / "000000.jpg").symlink_to((data / "ade/images/validation/000000.jpg").resolve())
    (ade / "annotations" / "validation" / "000000.png").symlink_to((data / "ade/annotations/validation/000000.png").resolve())
    (ade / "classes.txt").write_text((data / "ade" / "classes.txt").read_text())
    val = json.loads((data / "coco/annotations/instances_val2017.json").read_text())
    val["images"] = val["images"][1:2]
    val["annotations"] = [a for a in val["annotations"] if a["image_id"] == val["images"][0]["id"]]
    (tmp / "val.json").write_text(json.dumps(val))
    return {"segment": ["--dataset", str(ade)],
            "detect": ["--dataset", str(data / "coco"), "--val-json", str(tmp / "val.json")]}


def _cpu() -> str:
    """The CPU's model name and widest vector extension, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    return f"{name}, {'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    times: dict[str, list[float]] = {"segment": [], "detect": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = _one_image_val(a.data, Path(tmp))
        for r in range(a.repeats):
            for name, opts in (("segment", SEGMENT), ("detect", DETECT)):
                out = Path(tmp) / f"{name}_{r}.json"
                subprocess.run([sys.executable, "-m", "rils", "eval", name, "--checkpoint", a.checkpoint, *data[name],
                                "--device", "cpu", "--num-workers", "1", "--size", "64", "--steps", str(a.steps),
                                "--quiet", "--out", str(out), *opts], check=True, stdout=subprocess.DEVNULL)
                record = json.loads(out.read_text())
                times[name].append(record["seconds_per_step"])
                print(f"{name} repetition {r}: {record['seconds_per_step']} s/step ({record['precision']})", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"command": " ".join(["python", *sys.argv]), "commit": commit, "cpu": _cpu(),
              "threads": torch.get_num_threads(), "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
              "steps": a.steps, "repeats": a.repeats, "precision": record["precision"],
              "seconds_per_step": {k: {"median": statistics.median(v), "all": v} for k, v in times.items()},
              "settings": {"segment": SEGMENT, "detect": DETECT, "size": 64}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["seconds_per_step"]))


if __name__ == "__main__":
    main()
