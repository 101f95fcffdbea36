"""COCO-layout instance annotations for `rils eval detect`: reading, checking, training targets and
ViTDet's large-scale jitter.

    ROOT/annotations/instances_{train,val}2017.json   (or lvis_v1_{train,val}.json)
    ROOT/{train,val}2017/                             the images the JSON names

Split "train" reads train2017, "val" and "test" read val2017 (COCO's test-dev has no public
annotations); `--train-json/--train-images/--val-json/--val-images` replace any of the four paths.
Category ids (COCO's run 1..90 with gaps) map to contiguous labels 1..K in id order, 0 being
torchvision's background, and back again for the results file. A JSON whose images or categories
carry LVIS's keys (`frequency`, `neg_category_ids`, `not_exhaustive_category_ids`) is evaluated the
LVIS way (detect.py); LVIS images name no `file_name`, only a `coco_url`, whose last two parts are
the COCO folder and file (its val set draws on train2017 too).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..datasets import EvalDataset

SPLIT_FOLDERS = {"train": "train2017", "val": "val2017", "test": "val2017"}
_LVIS_JSON = {"train": "lvis_v1_train.json", "val": "lvis_v1_val.json", "test": "lvis_v1_val.json"}
_LVIS_IMAGE_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")


def split_paths(dataset: str | None, split: str, *, json_path=None, images=None) -> tuple[Path, Path]:
    """(annotation JSON, image folder) of `split`: the explicit paths where given, else the layout's."""
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"detection split must be train, val or test, not {split!r}")
    side = "train" if split == "train" else "val"
    if json_path is None or images is None:
        root = Path(dataset) if dataset else None
        if root is None or not root.is_dir():
            missing = " and ".join(f"--{side}-{k}" for k, v in (("json", json_path), ("images", images)) if v is None)
            raise FileNotFoundError(f"dataset {dataset!r} is not a folder in the COCO layout "
                                    f"(ROOT/annotations/instances_{SPLIT_FOLDERS[split]}.json); give {missing}")
        if json_path is None:
            json_path = root / "annotations" / f"instances_{SPLIT_FOLDERS[split]}.json"
            lvis = root / "annotations" / _LVIS_JSON[split]
            if not json_path.is_file() and lvis.is_file():
                json_path = lvis
            if not json_path.is_file():
                raise FileNotFoundError(f"no {split} split in {root}: {json_path} not found")
        images = images if images is not None else root / SPLIT_FOLDERS[split]
    json_path, images = Path(json_path), Path(images)
    if not json_path.is_file():
        raise FileNotFoundError(f"annotation file {json_path} not found")
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} not found")
    return json_path, images


def _read_json(path: Path) -> tuple[dict, str]:
    data = path.read_bytes()
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise ValueError(f"{path} is not valid JSON{where}") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), list) for k in keys):
        raise ValueError(f"{path} is not a COCO instances file (needs lists 'images', 'annotations' "
                         f"and 'categories')")
    return obj, hashlib.sha256(data).hexdigest()


def is_lvis(data: dict) -> bool:
    return any("frequency" in c for c in data["categories"]) or \
        any(k in im for im in data["images"][:100] for k in _LVIS_IMAGE_KEYS)


class CocoInstances(EvalDataset):
    """One split: images (PIL, lazily), their instances as torchvision targets, the COCO index
    (faster-coco-eval's `COCO`) for evaluation, and the label <-> category id maps."""

    def __init__(self, json_path, images, split: str):
        from faster_coco_eval import COCO

        json_path, images = Path(json_path), Path(images)
        data, digest = _read_json(json_path)
        self.name, self.split, self.json_path, self.images_dir = json_path.stem, split, json_path, images
        self.lvis = is_lvis(data)
        if self.lvis and not all("frequency" in c for c in data["categories"]):
            raise ValueError(f"{json_path} looks like LVIS but not every category has a 'frequency' "
                             f"(r/c/f), which APr/APc/APf need")
        self.files = [self._locate(im) for im in data["images"]]
        missing = [f.name for f in self.files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image(s) named in {json_path} are missing from "
                                    f"{images}: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        self.coco = COCO(data)
        self.image_ids = [int(im["id"]) for im in data["images"]]
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.cat_ids = [int(c["id"]) for c in cats]            # label k (1..K) is cat_ids[k - 1]
        self.label_of = {c: k + 1 for k, c in enumerate(self.cat_ids)}
        self.classnames = [str(c.get("name", c["id"])) for c in cats]
        self.cache_id = f"coco-{digest[:16]}-{hashlib.sha256(str(images.resolve()).encode()).hexdigest()[:8]}"
        self.skipped = {}

    def _locate(self, im: dict) -> Path:
        if "file_name" in im:
            return self.images_dir / im["file_name"]
        url = str(im.get("coco_url", ""))
        if not url:
            raise ValueError(f"image {im.get('id')} of {self.json_path} has neither 'file_name' nor 'coco_url'")
        folder, name = ["", *url.split("/")][-2:]
        here = self.images_dir / name
        other = self.images_dir.parent / folder / name  # LVIS val: some images live in train2017
        return here if here.is_file() or not other.is_file() else other

    def __len__(self) -> int:
        return len(self.image_ids)

    def image(self, i: int) -> Image.Image:
        with Image.open(self.files[i]) as im:
            return im.convert("RGB")

    def instances(self, i: int) -> list[dict]:
        """The image's annotations that train: not crowd regions (detectron2 leaves them out too)."""
        return [a for a in self.coco.imgToAnns[self.image_ids[i]] if not a.get("iscrowd", 0)]

    def annotated(self) -> list[int]:
        """Indices of the images with at least one instance: the ones training uses (detectron2's
        `filter_empty_annotations`, on in ViTDet's configs)."""
        return [i for i in range(len(self)) if self.instances(i)]

    def target(self, i: int) -> dict:
        """{"boxes": [N, 4] xyxy float, "labels": [N] 1..K, "masks": [N, H, W] uint8} at image size."""
        info = self.coco.imgs[self.image_ids[i]]
        anns = self.instances(i)
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        masks = np.zeros((len(anns), info["height"], info["width"]), np.uint8)
        for j, a in enumerate(anns):
            if "segmentation" in a:  # polygons, RLE or uncompressed RLE, as COCO's own reader takes them
                masks[j] = self.coco.annToMask(a)
            else:
                x0, y0, x1, y1 = boxes[j].round().int().tolist()
                masks[j, y0:y1, x0:x1] = 1
        return {"boxes": boxes, "labels": labels, "masks": torch.from_numpy(masks)}

    def category_id(self, label: int) -> int:
        return self.cat_ids[label - 1]


def train_subset(indices: list[int], fraction: float, seed: int) -> list[int]:
    """A fixed random `fraction` of `indices` (at least one), in the original order: the paper's
    low-shot detection (Table 5) samples annotated training images at 1%..50%."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--train-fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return list(indices)
    k = max(1, int(round(fraction * len(indices))))
    chosen = np.sort(np.random.default_rng(seed).choice(len(indices), size=k, replace=False))
    return [indices[j] for j in chosen]


class LargeScaleJitter:
    """ViTDet's training augmentation (detectron2 `RandomFlip`, `ResizeScale(0.1, 2.0)`,
    `FixedSizeCrop`): flip, scale the image to fit size×size times a factor in [0.1, 2.0], crop a
    random size×size window where it is larger, pad bottom and right where it is smaller (with the
    mean colour, so the normalised padding is 0 as detectron2's), and drop boxes left under 1 px.
    Boxes and masks follow through torchvision.transforms.v2."""

    def __init__(self, size: int, mean, scale_range=(0.1, 2.0)):
        from torchvision.transforms import v2

        self.size, self.mean = size, [float(m) for m in mean]
        self.jitter = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.RandomHorizontalFlip(),
                                  v2.ScaleJitter((size, size), scale_range=scale_range)])
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=1.0)

    def __call__(self, image, target):
        from torchvision.transforms.v2 import functional as F

        image, target = self.jitter(image, target)
        h, w = image.shape[-2:]
        top = int(torch.randint(0, max(h - self.size, 0) + 1, ()))
        left = int(torch.randint(0, max(w - self.size, 0) + 1, ()))
        ch, cw = min(h, self.size), min(w, self.size)
        pad = [0, 0, self.size - cw, self.size - ch]
        image = F.pad(F.crop(image, top, left, ch, cw), pad, fill=self.mean)
        target = {**target, "boxes": F.pad(F.crop(target["boxes"], top, left, ch, cw), pad),
                  "masks": F.pad(F.crop(target["masks"], top, left, ch, cw), pad, fill=0)}
        return self.sanitize(image, target)


class TrainImages(torch.utils.data.Dataset):
    """The training view: (normalisable float image [3, S, S], target of plain tensors)."""

    def __init__(self, data: CocoInstances, indices: list[int], size: int, mean):
        self.data, self.indices, self.lsj = data, list(indices), LargeScaleJitter(size, mean)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, n: int):
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        i = self.indices[n]
        pil, t = self.data.image(i), self.data.target(i)
        if t["masks"].shape[-2:] != (pil.height, pil.width):
            raise ValueError(f"{self.data.files[i]} is {pil.width}x{pil.height} px but "
                             f"{self.data.json_path} says {t['masks'].shape[2]}x{t['masks'].shape[1]}")
        image = tv_tensors.Image(F.pil_to_tensor(pil))
        target = {"boxes": tv_tensors.BoundingBoxes(t["boxes"], format="XYXY", canvas_size=image.shape[-2:]),
                  "masks": tv_tensors.Mask(t["masks"]), "labels": t["labels"]}
        image, target = self.lsj(image, target)
        return image.as_subclass(torch.Tensor), {k: v.as_subclass(torch.Tensor) for k, v in target.items()}


class TestImages(torch.utils.data.Dataset):
    """The evaluation view: (float image [3, H, W] at its own size, COCO image id); the detector's
    transform resizes and pads it, and maps its outputs back to this size."""

    def __init__(self, data: CocoInstances, indices: list[int] | None = None):
        self.data = data
        self.indices = list(range(len(data))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, n: int):
        from torchvision.transforms.v2 import functional as F

        i = self.indices[n]
        return F.to_dtype(F.pil_to_tensor(self.data.image(i)), torch.float32, scale=True), self.data.image_ids[i]


def collate_lists(batch):
    """Detection batches are lists (images differ in size, targets in length): torchvision's way."""
    return tuple(list(x) for x in zip(*batch))
