"""Semantic-segmentation data for `rils eval segment`: the ADE20K release layout and MMSeg's
ADE20K pipelines (configs/_base_/datasets/ade20k.py), written with torchvision.transforms.v2.

    ROOT/images/{training,validation}/NAME.jpg      (also .jpeg / .png)
    ROOT/annotations/{training,validation}/NAME.png one label per pixel
    ROOT/classes.txt                                optional: line k (1-based) names label k

Label 0 is "other" and becomes the ignore index 255; labels 1..K become classes 0..K-1, and a
label 255 stays ignored (MMSeg's `reduce_zero_label`). Without classes.txt the K = 150 names are
ADE20K's (MMSeg's ADE20KDataset).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = {"train": "training", "training": "training",
          "test": "validation", "val": "validation", "validation": "validation"}

# MMSeg's ADE20KDataset METAINFO classes, label k + 1 -> name k ('bed ' there has a stray space).
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair",
    "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box",
    "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet",
    "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower",
    "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag")


# ----------------------------------------------------------------------------------------- dataset

class SegmentationFolder(torch.utils.data.Dataset):
    """One split of an ADE20K-layout folder: item i is (tv_tensors.Image uint8 [3, H, W],
    tv_tensors.Mask int64 [H, W] with classes 0..K-1 and 255 = ignore), untransformed."""

    def __init__(self, root, split: str):
        root = Path(root)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.root, self.split, self.name = root, SPLITS[split], root.name
        image_dir, label_dir = root / "images" / self.split, root / "annotations" / self.split
        for d in (image_dir, label_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"{d} not found (ADE20K layout: images/ and annotations/ with "
                                        f"training/ and validation/)")
        self.images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise ValueError(f"{image_dir} holds no .jpg/.jpeg/.png images")
        self.labels = [label_dir / f"{p.stem}.png" for p in self.images]
        for image, label in zip(self.images, self.labels):
            if not label.is_file():
                raise FileNotFoundError(f"{image} has no label PNG ({label} not found)")
            # Header reads only, so a mismatch stops the run before training rather than hours in.
            with Image.open(image) as a, Image.open(label) as b:
                if a.size != b.size:
                    raise ValueError(f"{label} is {b.size[0]}x{b.size[1]} but its image is "
                                     f"{a.size[0]}x{a.size[1]}")
        stems = {p.stem for p in self.images}
        orphans = sum(1 for p in label_dir.glob("*.png") if p.stem not in stems)
        self.skipped = {"label_without_image": orphans} if orphans else {}
        self.classnames = read_classnames(root)
        self.cache_id = f"ade20k-layout:{root.resolve()}:{self.split}"

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def __len__(self) -> int:
        return len(self.images)

    def read_label(self, i: int) -> np.ndarray:
        """[H, W] int64: the label PNG reduced (0 and 255 -> 255, k -> k - 1), checked against the
        classes."""
        path = self.labels[i]
        raw = np.asarray(Image.open(path))
        if raw.ndim != 2:
            raise ValueError(f"{path} is not a single-channel label PNG (shape {raw.shape})")
        ignored = (raw == 0) | (raw == IGNORE_INDEX)
        top = int(raw[~ignored].max()) if (~ignored).any() else 0
        if top > self.num_classes:
            raise ValueError(f"{path} holds label {top}, above the {self.num_classes} classes")
        label = raw.astype(np.int64) - 1
        label[ignored] = IGNORE_INDEX
        return label

    def __getitem__(self, i: int):
        with Image.open(self.images[i]) as im:     # PIL: torchvision.io's decoders are deprecated
            image = F.pil_to_tensor(im.convert("RGB"))
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(self.read_label(i)))


def read_classnames(root: Path) -> list[str]:
    path = root / "classes.txt"
    if not path.is_file():
        return list(ADE20K_CLASSES)
    names = [line.strip() for line in path.read_text().splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names or not all(names):
        raise ValueError(f"{path} must hold one non-empty class name per line")
    return names


def load_split(dataset, split: str, **_options) -> SegmentationFolder:
    """The Protocol's `load_split`: DATASET is a folder in the ADE20K layout."""
    root = Path(dataset)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r} is not a folder; segment reads the ADE20K layout "
                                f"(images/ and annotations/ with training/ and validation/)")
    return SegmentationFolder(root, split)


class Transformed(torch.utils.data.Dataset):
    """`dataset` with `transform(image, mask)` applied to every item."""

    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.transform(*self.dataset[i])


# ---------------------------------------------------------------------------------------- pipeline

def rescale_size(height: int, width: int, scale: tuple[int, int]) -> list[int]:
    """mmcv's `imrescale` (MMSeg's Resize with keep_ratio): the largest size with the long side at
    most max(scale) and the short side at most min(scale), aspect ratio kept."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return [int(height * factor + 0.5), int(width * factor + 0.5)]


class RandomRescale(v2.Transform):
    """MMSeg's RandomResize(scale, ratio_range, keep_ratio=True): `scale` times a uniform ratio,
    then `rescale_size`. (torchvision's ScaleJitter fixes which side is the long one.)"""

    def __init__(self, scale: tuple[int, int], ratio_range=(0.5, 2.0)):
        super().__init__()
        self.scale, self.ratio_range = scale, ratio_range

    def make_params(self, flat_inputs):
        lo, hi = self.ratio_range
        ratio = lo + (hi - lo) * float(torch.rand(()))
        h, w = v2.query_size(flat_inputs)
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))   # mmcv truncates the scale
        return {"size": rescale_size(h, w, target)}

    def transform(self, inpt, params):
        # cv2's bilinear (mmcv) does not antialias; masks are resized nearest by torchvision.
        return F.resize(inpt, params["size"], antialias=False)


class CatMaxRandomCrop(v2.Transform):
    """MMSeg's RandomCrop(crop_size, cat_max_ratio): up to 10 re-draws of a crop in which no class
    covers `cat_max_ratio` or more of the labelled pixels (the last draw is kept)."""

    def __init__(self, size: int, cat_max_ratio: float = 0.75, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.size, self.cat_max_ratio, self.ignore_index = size, cat_max_ratio, ignore_index

    def make_params(self, flat_inputs):
        h, w = v2.query_size(flat_inputs)
        ch, cw = min(self.size, h), min(self.size, w)
        mask = next((x for x in flat_inputs if isinstance(x, tv_tensors.Mask)), None)

        def draw():
            return int(torch.randint(h - ch + 1, ())), int(torch.randint(w - cw + 1, ()))

        top, left = draw()
        if mask is not None and self.cat_max_ratio < 1.0:
            for _ in range(10):
                crop = mask[..., top:top + ch, left:left + cw]
                counts = torch.bincount(crop[crop != self.ignore_index].flatten())
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                top, left = draw()
        return {"top": top, "left": left, "height": ch, "width": cw}

    def transform(self, inpt, params):
        return F.crop(inpt, **params)


class PhotoMetricDistortion(v2.Transform):
    """MMSeg's PhotoMetricDistortion: each with probability 0.5, brightness + U(-32, 32), contrast
    × U(0.5, 1.5) (before or after the colour steps, by a coin), HSV saturation × U(0.5, 1.5) and
    hue + U{-18..17}/180 of a turn. ColorJitter differs: multiplicative brightness, contrast and
    saturation blended towards grey, always applied. Images only; masks pass through."""

    def __init__(self, brightness: float = 32, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue: int = 18):
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def make_params(self, flat_inputs):
        def coin():
            return bool(torch.rand(()) < 0.5)

        def uniform(lo, hi):
            return lo + (hi - lo) * float(torch.rand(()))

        return {"beta": uniform(-self.brightness, self.brightness) if coin() else 0.0,
                "contrast_first": coin(),
                "alpha": uniform(*self.contrast) if coin() else 1.0,
                "saturation": uniform(*self.saturation) if coin() else 1.0,
                "hue": int(torch.randint(-self.hue, self.hue, ())) / 180 if coin() else 0.0}

    def transform(self, inpt, params):
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        x = (inpt.float() + params["beta"]).clamp(0, 255) / 255
        if params["contrast_first"]:
            x = (x * params["alpha"]).clamp(0, 1)
        x = _scale_saturation(x, params["saturation"])
        if params["hue"]:
            x = F.adjust_hue(x, params["hue"])
        if not params["contrast_first"]:
            x = (x * params["alpha"]).clamp(0, 1)
        return tv_tensors.wrap((x * 255).round().to(torch.uint8), like=inpt)


def _scale_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    """HSV saturation × factor (clipped to 1) with hue and value kept, in RGB: each channel moves
    towards the pixel's max by `factor`, at most until the smallest one reaches 0."""
    if factor == 1.0:
        return x
    top, bottom = x.max(dim=-3, keepdim=True).values, x.min(dim=-3, keepdim=True).values
    factor = torch.clamp(top / (top - bottom).clamp_min(1e-12), max=factor)
    return top - factor * (top - x)


class PadTo(v2.Transform):
    """Pad bottom and right to size × size: images with `fill` (0 after normalising, MMSeg's
    SegDataPreProcessor pad_val), masks with the ignore index (its seg_pad_val)."""

    def __init__(self, size: int, fill: float = 0.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.size, self.fill, self.ignore_index = size, fill, ignore_index

    def transform(self, inpt, params):
        h, w = inpt.shape[-2:]
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else self.fill
        return F.pad(inpt, [0, 0, max(self.size - w, 0), max(self.size - h, 0)], fill=fill)


def _normalize(mean, std) -> list:
    return [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(list(mean), list(std))]


def train_pipeline(size: int, mean, std, *, ratio_range=(0.5, 2.0), cat_max_ratio: float = 0.75,
                   flip: float = 0.5, distort: bool = True) -> v2.Compose:
    """MMSeg's ADE20K train pipeline at crop `size`: its scale (2048, 512) is (4·size, size)."""
    steps = [RandomRescale((4 * size, size), ratio_range), CatMaxRandomCrop(size, cat_max_ratio),
             v2.RandomHorizontalFlip(flip)]
    steps += [PhotoMetricDistortion()] if distort else []
    return v2.Compose(steps + _normalize(mean, std) + [PadTo(size)])


class Rescale(v2.Transform):
    """MMSeg's Resize(scale=(4·size, size), keep_ratio=True), as `rescale_size`."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def transform(self, inpt, params):
        h, w = inpt.shape[-2:]
        return F.resize(inpt, rescale_size(h, w, (4 * self.size, self.size)), antialias=False)


def eval_pipeline(size: int, mean, std) -> v2.Compose:
    """MMSeg's ADE20K test pipeline for the image: Rescale, normalise. The label is not resized:
    the predictions are resized back to it."""
    return v2.Compose([Rescale(size)] + _normalize(mean, std))
