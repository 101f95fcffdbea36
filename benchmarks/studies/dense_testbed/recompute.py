"""Recompute the dense testbed's numbers from the saved predictions, independently of rils' metric
code: mIoU / aAcc from the prediction and label PNGs (numpy), box and mask AP from the COCO results
JSON (pycocotools). Adds the all-background labelling's mIoU, the floor a segmenter must clear.

    python benchmarks/studies/dense_testbed/recompute.py --data DIR --pred DIR --results DIR --out FILE
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image


def segmentation(ade: Path, predictions: Path) -> dict:
    """MMSeg's IoU over the validation split: label 0 ignored, k -> class k-1."""
    classes = (ade / "classes.txt").read_text().splitlines()
    k = len(classes)
    inter, union, label_area = np.zeros(k), np.zeros(k), np.zeros(k)
    bg_inter, bg_union = np.zeros(k), np.zeros(k)
    for png in sorted((ade / "annotations" / "validation").glob("*.png")):
        gt = np.asarray(Image.open(png)).astype(np.int64)
        pred = np.asarray(Image.open(predictions / png.name)).astype(np.int64)
        keep = gt > 0
        gt, pred = gt[keep] - 1, pred[keep] - 1
        for c in range(k):
            g, p, b = gt == c, pred == c, np.full_like(gt, c == 0, dtype=bool)
            inter[c] += (g & p).sum()
            union[c] += (g | p).sum()
            label_area[c] += g.sum()
            bg_inter[c] += (g & b).sum()
            bg_union[c] += (g | b).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, bg_iou = inter / union, bg_inter / bg_union
    return {"mIoU": float(np.nanmean(iou)), "aAcc": float(inter.sum() / label_area.sum()),
            "all_background_mIoU": float(np.nanmean(bg_iou)),
            "per_class_IoU": dict(zip(classes, map(float, iou)))}


def detection(coco_root: Path, results_json: Path) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_root / "annotations" / "instances_val2017.json"))
        results = json.loads(results_json.read_text())
        for iou_type in ("bbox", "segm"):
            dets = gt.loadRes([{k: v for k, v in r.items() if not (iou_type == "segm" and k == "bbox")}
                               for r in results]) if results else None
            if dets is None:
                out[iou_type] = {"AP": 0.0, "AP50": 0.0}
                continue
            ev = COCOeval(gt, dets, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[iou_type] = {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--pred", required=True, type=Path)
    ap.add_argument("--results", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    seg = json.loads((a.results / "segment.json").read_text())
    det = json.loads((a.results / "detect.json").read_text())
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    record = {"commit_at_recomputation": commit, "segment": {"reported": seg["metrics"], "recomputed": segmentation(a.data / "ade", a.pred / "segment")},
              "detect": {"reported": {t: {k: det["metrics"][t][k] for k in ("AP", "AP50")} for t in ("bbox", "segm")},
                         "recomputed": detection(a.data / "coco", a.pred / "detect.json")},
              "seconds_per_step": {"segment": seg.get("seconds_per_step"), "detect": det.get("seconds_per_step")}}
    a.out.write_text(json.dumps(record, indent=1) + "\n")
    s, d = record["segment"], record["detect"]
    print(f"segment mIoU {s['reported']['mIoU']:.4f} (recomputed {s['recomputed']['mIoU']:.4f}; "
          f"all-background {s['recomputed']['all_background_mIoU']:.4f})")
    for t in ("bbox", "segm"):
        print(f"detect {t} AP {d['reported'][t]['AP']:.4f} (recomputed {d['recomputed'][t]['AP']:.4f}), "
              f"AP50 {d['reported'][t]['AP50']:.4f} (recomputed {d['recomputed'][t]['AP50']:.4f})")


if __name__ == "__main__":
    main()
