"""`rils data prepare shapes-dense`: a small testbed for dense-transfer fine-tuning (semantic
segmentation and detection), rendered from the demo's procedural shapes and written in the ADE20K
and COCO layouts that `rils eval segment` and `rils eval detect` read.

Unlike the demo corpus (one dominant shape that is never occluded), an image here holds 0-5 shapes of
any kind, colour and size (0.15-0.5 of the side) that may overlap, later ones hiding earlier ones,
and may be clipped a little by the border: occlusion is what the testbed is for.

    DIR/ade/images/{training,validation}/000000.jpg       RGB JPEG (quality 95, 4:4:4)
    DIR/ade/annotations/{training,validation}/000000.png  mode L: 0 other (a 2-px frame, ignored),
                                                          1 background, 2..7 the SHAPES kinds
    DIR/ade/classes.txt                                   line k names label k
    DIR/coco/{train2017,val2017}/000000.jpg               the same JPEG bytes (hard link or copy)
    DIR/coco/annotations/instances_{train2017,val2017}.json
    DIR/manifest.json

Every image is a function of (seed, split, index) alone, so the output is byte-identical run to run.
"""
from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..demo import _EXTENT, _SUPERSAMPLE, COLORS, SHAPES, _draw, _make_shape, _Shape, shaded_background
from .common import png_bytes, write_manifest

DATASET = "shapes-dense"
# (our split name, ADE20K folder, COCO folder)
SPLITS = (("train", "training", "train2017"), ("val", "validation", "val2017"))
CLASSES = ("background", *SHAPES)  # segmentation label k (k >= 1) names CLASSES[k - 1]
OTHER, BACKGROUND = 0, 1           # ADE20K's convention: 0 is "other", ignored by evaluation
FRAME = 2                          # px of label OTHER around every annotation map
MIN_AREA = 8                       # visible pixels an instance needs to be annotated in COCO
JPEG_QUALITY = 95
MAX_SHAPES = 5
SIZE_RANGE = (0.15, 0.5)           # shape diameter, fractions of the side
# A shape's centre stays this share of its extent radius (demo._EXTENT * size) away from the border:
# below 1, so a shape may be clipped a little, never cut in half.
_BORDER = 0.8
_SPLIT_IDS = {"train": 0, "val": 1}
_LAYOUT, _RENDER = 0, 1
# A fifth entropy word: the demo corpus seeds its streams with the first four words alone, so
# without it shapes-dense image i would share its background with demo image i.
_STREAM_TAG = 0x5D
_STEM = re.compile(r"^\d{6}\.(jpg|png)$")


def category_id(kind: int) -> int:
    """COCO category id of SHAPES[kind]; deliberately not 0..5 or 1..6, so readers that assume
    contiguous ids (or id == label) fail here rather than on real COCO."""
    return 3 * kind + 5


def image_id(index: int) -> int:
    """COCO image id of the split's image `index` (not the index itself, for the same reason)."""
    return 1000 + index


_KIND_OF = {category_id(k): k for k in range(len(SHAPES))}


def categories() -> list[dict]:
    return [{"id": category_id(k), "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES)]


# ---------------------------------------------------------------- rendering

def _rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_IDS[split], index, stream, _STREAM_TAG])


def layout(seed: int, split: str, index: int) -> list[_Shape]:
    """The shapes of one image in drawing order (later ones occlude earlier ones). Image 0 of each
    split has none, so every split holds an image without objects."""
    if index == 0:
        return []
    rng = _rng(seed, split, index, _LAYOUT)
    shapes = []
    for _ in range(int(rng.integers(1, MAX_SHAPES + 1))):
        kind, color = int(rng.integers(len(SHAPES))), int(rng.integers(len(COLORS)))
        size = float(rng.uniform(*SIZE_RANGE))
        m = _BORDER * _EXTENT * size
        x, y = rng.uniform(m, 1 - m, 2)
        shapes.append(_make_shape(rng, kind, color, float(x), float(y), size))
    return shapes


@dataclass(frozen=True)
class Sample:
    image: Image.Image      # RGB, n x n
    instances: np.ndarray   # [n, n] uint8: 0 none, j + 1 where shapes[j] is the visible one
    shapes: list[_Shape]

    def labels(self) -> np.ndarray:
        """The ADE20K annotation map: BACKGROUND, kind + 2 of the visible shape, OTHER on the frame."""
        lut = np.array([BACKGROUND] + [s.kind + 2 for s in self.shapes], dtype=np.uint8)
        lab = lut[self.instances]
        lab[:FRAME, :] = lab[-FRAME:, :] = lab[:, :FRAME] = lab[:, -FRAME:] = OTHER
        return lab


def render(seed: int, split: str, index: int, image_size: int) -> Sample:
    n, k = image_size, _SUPERSAMPLE
    shapes = layout(seed, split, index)
    image = shaded_background(_rng(seed, split, index, _RENDER), n).resize((n * k, n * k), Image.NEAREST)
    inst = Image.new("L", (n * k, n * k))
    draws = (ImageDraw.Draw(image), ImageDraw.Draw(inst))
    for j, s in enumerate(shapes):
        _draw(draws, (s.rgb, j + 1), s, n * k)
    return Sample(image.reduce(k), _downsample(np.asarray(inst), k), shapes)


def _downsample(inst: np.ndarray, k: int) -> np.ndarray:
    """Supersampled instance ids -> one per pixel. A pixel is covered when at least half of its
    subpixels are (the demo's rule); it then goes to the instance with most subpixels in it, a tie
    to the one drawn later (on top). Unlike the demo's block maximum, this stays right when shapes
    overlap."""
    subs = np.stack([inst[i::k, j::k] for i in range(k) for j in range(k)])  # [k*k, n, n]
    covered = 2 * (subs > 0).sum(0) >= k * k
    votes = (subs[:, None] == subs[None, :]).sum(1).astype(np.int32)      # subpixels sharing each one's id
    score = np.where(subs > 0, votes * 256 + subs, -1)
    best = np.take_along_axis(subs, score.argmax(0)[None], 0)[0]
    return np.where(covered, best, 0).astype(np.uint8)


def jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    # 4:4:4: chroma subsampling would smear the colours of shapes a few pixels wide.
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


# ---------------------------------------------------------------- annotations

def _bbox(mask: np.ndarray) -> list[int]:
    """[x, y, w, h] of the mask's extent, in whole pixels (what toBbox of its RLE gives)."""
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def instance_annotations(sample: Sample) -> tuple[list[dict], int]:
    """COCO annotations (without ids) of the visible part of every shape, and how many shapes were
    left out. A shape hidden down to fewer than MIN_AREA pixels gets no annotation: such slivers are
    unannotated in COCO, while the ADE20K map keeps their label (a detector cannot be asked to find
    them, a pixel classifier may still get their pixels right)."""
    from faster_coco_eval.core import mask as mask_util  # the detection evaluator's own RLE code

    anns, slivers = [], 0
    for j, s in enumerate(sample.shapes):
        mask = sample.instances == j + 1
        area = int(mask.sum())
        if area < MIN_AREA:
            slivers += 1
            continue
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        anns.append({"category_id": category_id(s.kind), "bbox": _bbox(mask), "area": area, "iscrowd": 0,
                     "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}})
    return anns, slivers


# ---------------------------------------------------------------- output

def _check_out(out: Path) -> None:
    """A new or empty folder, or a previous shapes-dense output (which is then overwritten)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous != DATASET:
        raise ValueError(f"--out {out} is not empty and holds no previous {DATASET} output "
                         f"(manifest.json); choose a new or empty folder")


def _clear(folder: Path) -> Path:
    """Remove the images a previous run left (our NNNNNN.jpg/png names only), so none go stale and
    no hard link to an old file survives; then make sure the folder exists."""
    if folder.is_dir():
        for f in folder.iterdir():
            if _STEM.match(f.name) and f.is_file():
                f.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _same_bytes(src: Path, dst: Path, data: bytes) -> None:
    """dst holds the bytes of src: a hard link where the file system allows one, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        dst.write_bytes(data)


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limit = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise ValueError(f"--{name} must be {limit}, got {value!r}")
    return value


def prepare(out, image_size: int = 64, train: int = 600, val: int = 150, seed: int = 0, log=None) -> dict:
    """Render the testbed into `out` (layout: the module docstring); returns the manifest."""
    image_size = _check_int("image-size", image_size, 16)
    counts = {"train": _check_int("train", train, 1, 1_000_000), "val": _check_int("val", val, 1, 1_000_000)}
    seed = _check_int("seed", seed, 0)
    out = Path(out)
    _check_out(out)
    ade, coco = out / "ade", out / "coco"
    (ade / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (ade / "classes.txt").write_text("".join(c + "\n" for c in CLASSES), encoding="utf-8")
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    splits, crowd = {}, None
    for split, ade_name, coco_name in SPLITS:
        img_dir, ann_dir = _clear(ade / "images" / ade_name), _clear(ade / "annotations" / ade_name)
        coco_dir = _clear(coco / coco_name)
        images, annotations, slivers = [], [], 0
        per_kind = [0] * len(SHAPES)
        for index in range(counts[split]):
            sample = render(seed, split, index, image_size)
            stem = f"{index:06d}"
            jpg = jpeg_bytes(sample.image)
            (img_dir / f"{stem}.jpg").write_bytes(jpg)
            _same_bytes(img_dir / f"{stem}.jpg", coco_dir / f"{stem}.jpg", jpg)
            (ann_dir / f"{stem}.png").write_bytes(png_bytes(Image.fromarray(sample.labels())))
            anns, left_out = instance_annotations(sample)
            slivers += left_out
            if split == "train" and crowd is None and len(anns) >= 2:
                # One crowd region, so readers' iscrowd handling runs: the largest visible shape again.
                big = max(anns, key=lambda a: a["area"])
                anns.append({**big, "iscrowd": 1})
                crowd = {"split": split, "image_id": image_id(index), "file_name": f"{stem}.jpg"}
            images.append({"id": image_id(index), "file_name": f"{stem}.jpg",
                           "width": image_size, "height": image_size})
            for a in anns:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id(index), **a})
                if not a["iscrowd"]:
                    per_kind[_KIND_OF[a["category_id"]]] += 1
            if log is not None and (index + 1) % 1000 == 0:
                log(f"{DATASET} {split}: {index + 1}/{counts[split]}")
        _write_json(coco / "annotations" / f"instances_{coco_name}.json", {
            "info": {"description": f"rils {DATASET} {split} (seed {seed})", "version": "1"},
            "licenses": [], "images": images, "annotations": annotations, "categories": categories()})
        splits[split] = {
            "images": len(images),
            "images_without_objects": len(images) - len({a["image_id"] for a in annotations}),
            "annotations": len(annotations),
            "crowd_annotations": sum(a["iscrowd"] for a in annotations),
            "instances_per_category": {SHAPES[k]: per_kind[k] for k in range(len(SHAPES))},
            "unannotated_slivers": slivers,
            "ade_images": f"ade/images/{ade_name}", "ade_annotations": f"ade/annotations/{ade_name}",
            "coco_images": f"coco/{coco_name}", "coco_annotations": f"coco/annotations/instances_{coco_name}.json",
        }
    # Paths relative to DIR only, so two runs into different folders write identical manifests too.
    manifest = {
        "dataset": DATASET,
        "options": {"image_size": image_size, "train": counts["train"], "val": counts["val"], "seed": seed},
        "samples": sum(counts.values()),
        "splits": splits,
        "segmentation": {"layout": "ade20k", "classes_file": "ade/classes.txt", "ignore_label": OTHER,
                         "frame_px": FRAME,
                         "labels": {str(OTHER): "other", **{str(k + 1): c for k, c in enumerate(CLASSES)}}},
        "detection": {"layout": "coco", "categories": categories(), "min_area": MIN_AREA, "crowd": crowd,
                      "image_id": "1000 + index"},
        "image": {"format": "jpeg", "quality": JPEG_QUALITY, "subsampling": "4:4:4", "mode": "RGB",
                  "size": [image_size, image_size]},
        "usage": {"segment": "rils eval segment --checkpoint CKPT --dataset DIR/ade",
                  "detect": "rils eval detect --checkpoint CKPT --dataset DIR/coco"},
    }
    write_manifest(out, manifest)
    return manifest
