"""The Table 9 layout from benchmarks/studies/two_stage/results/*.json (benchmarks/studies/two_stage/run.sh), as Markdown."""
import json
import sys
from pathlib import Path

RES = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/studies/two_stage/results")
FIRST = {"mim_to_lit": "mae_stage1", "mim_to_clip": "mae_stage1", "clip_to_mim": "clip_stage1"}
ROWS = [("MAE", "mae"), ("CLIP", "clip"), ("MIM→LiT", "mim_to_lit"), ("MIM→CLIP", "mim_to_clip"),
        ("CLIP→MIM", "clip_to_mim"), ("RILS (E2E)", "rils")]


def steps(name: str) -> int:
    lines = (RES / f"{name}.metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def main() -> None:
    print("| method | stages (steps) | ZS. shape | ZS. colour | ZS. mean | Lin. shape | R@1 i→t | colour mIoU |")
    print("|---|---|---|---|---|---|---|---|")
    for label, name in ROWS:
        f = RES / f"{name}.json"
        if not f.is_file():
            print(f"| {label} | not run yet | | | | | | |")
            continue
        r = json.loads(f.read_text())
        zs = r.get("zeroshot", {})
        budget = f"{steps(FIRST[name])} + {steps(name)}" if name in FIRST else str(steps(name))
        print(f"| {label} | {budget} | {pct(zs.get('shape', {}).get('top1'))} | {pct(zs.get('color', {}).get('top1'))} "
              f"| {pct(r.get('zeroshot_top1'))} | {pct(r.get('linear_top1'))} | {pct(r.get('retrieval_i2t_r1'))} "
              f"| {pct(r.get('patchseg_color_miou'))} |")


if __name__ == "__main__":
    main()
