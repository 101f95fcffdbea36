"""Evaluation datasets. DATASET is a name (`fashion-mnist`, `demo-shapes`) or a path.

A path is an ImageFolder tree (one folder per class, folder name = class name), a CSV of image path
and label (classification), or a CSV of image path and caption (retrieval; several rows per image
allowed, one per caption). Splits: a path may contain `{split}` (e.g. `data/{split}.csv`), or be a
folder holding one sub-folder per split (`train/`, `test/` or `val/`); otherwise the path itself is
the data, whatever the split, and its `split` is "all".

For the named datasets, `val` and `test` both mean the held-out split (demo-shapes calls it `val`,
Fashion-MNIST `test`), so every protocol can ask for `train` and `test`.

Every dataset has a `cache_id`: a string that changes when its images (or their order) change; the
feature cache keys on it.
"""
from __future__ import annotations

import csv
import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.prepare import fashion_mnist

FASHION_MNIST_DIR = fashion_mnist.DEFAULT_ROOT
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
NAMES = ("fashion-mnist", "demo-shapes")
WHOLE = "all"   # the split of a path that has none (a CSV without {split}, a folder without split folders)
_HELD_OUT = ("test", "val")


class EvalDataset(ABC):
    """Images (RGB PIL, loaded lazily) with integer `labels` + `classnames` and/or `captions`.

    `template_key` names the entry of the shipped class names / templates JSON, when there is one.
    A dataset with segmentation masks (for patchseg) has `seg_classnames` (mask label k -> name)
    and a method `image_and_mask(i)` -> (image, [H, W] integer mask).
    """

    name: str = ""
    split: str = ""
    cache_id: str = ""
    labels: np.ndarray | None = None
    classnames: list[str] | None = None
    captions: list[list[str]] | None = None
    template_key: str | None = None
    seg_classnames: list[str] | None = None
    skipped: dict = {}    # files left out, by reason (e.g. {"unreadable_image": 1}); never mutated

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def image(self, i: int) -> Image.Image: ...

    def require_labels(self) -> np.ndarray:
        if self.labels is None:
            raise ValueError(f"dataset {self.name!r} ({self.split}) has no class labels")
        return self.labels

    def require_captions(self) -> list[list[str]]:
        if self.captions is None:
            raise ValueError(f"dataset {self.name!r} ({self.split}) has no captions; retrieval needs "
                             f"a CSV with a caption column or demo-shapes")
        return self.captions

    def with_transform(self, transform) -> "TransformedDataset":
        return TransformedDataset(self, transform)


class Subset(EvalDataset):
    """Some samples of a dataset, in the given order."""

    def __init__(self, dataset: EvalDataset, indices):
        self.dataset, self.indices = dataset, [int(i) for i in indices]
        self.name, self.split, self.template_key = dataset.name, dataset.split, dataset.template_key
        self.classnames = dataset.classnames
        self.labels = None if dataset.labels is None else np.asarray(dataset.labels)[self.indices]
        digest = hashlib.sha256(",".join(map(str, self.indices)).encode()).hexdigest()
        self.cache_id = f"{dataset.cache_id}:subset:{digest}"

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> Image.Image:
        return self.dataset.image(self.indices[i])


class TransformedDataset(torch.utils.data.Dataset):
    """(transform(image), label) pairs for a DataLoader; label is -1 when the dataset has none."""

    def __init__(self, dataset: EvalDataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        image = self.dataset.image(i)
        label = -1 if self.dataset.labels is None else int(self.dataset.labels[i])
        return self.transform(image), label


# ------------------------------------------------------------------------------- Fashion-MNIST

class FashionMNIST(EvalDataset):
    """The gzipped IDX files of Debian's `dataset-fashion-mnist`; 28x28 grayscale shown as RGB."""

    def __init__(self, split: str = "test", root: str | os.PathLike | None = None):
        split = "test" if split in _HELD_OUT else split
        if split != "train" and split != "test":
            raise ValueError(f"fashion-mnist has splits train and test, not {split!r}")
        root = Path(root or os.environ.get("RILS_FASHION_MNIST") or FASHION_MNIST_DIR)
        images, labels = (root / name for name in fashion_mnist.FILES[split])
        for f in (images, labels):
            if not f.is_file():
                package = fashion_mnist.PACKAGE
                raise FileNotFoundError(
                    f"Fashion-MNIST file {f} not found; install the Debian package {package} "
                    f"(apt-get install {package}) or point RILS_FASHION_MNIST / "
                    f"--fashion-mnist-root at the folder holding the *-ubyte.gz files")
        self.images, labels_u8 = fashion_mnist.load_split(images, labels)
        self.labels = labels_u8.astype(np.int64)
        self.name, self.split, self.template_key = "fashion-mnist", split, "fashion-mnist"
        from .prompts import get_classnames
        self.classnames = get_classnames("fashion-mnist")
        self.cache_id = f"fashion-mnist:{split}:{_files_id([images])}"

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i]).convert("RGB")


# ---------------------------------------------------------------------------------- demo-shapes

class DemoShapesDataset(EvalDataset):
    """`rils.data.demo.DemoShapes`, labelled by `task` ("shape" or "color"), with its 5 captions."""

    def __init__(self, split: str = "val", task: str = "shape", num_samples: int | None = None,
                 image_size: int = 64, seed: int = 0):
        from ..data import demo  # imported here: the demo corpus is optional for path datasets

        split = "val" if split in _HELD_OUT else split
        self.demo = demo.DemoShapes(split=split, num_samples=num_samples, image_size=image_size, seed=seed)
        self.name, self.split = "demo-shapes", split
        self.task = task
        self.labels = np.asarray(self.demo.labels(task), dtype=np.int64)
        self.classnames = demo.DemoShapes.classnames(task)
        self.seg_classnames = demo.segmentation_classes(task)
        self.template_key = "demo-shapes" if task == "shape" else f"demo-shapes-{task}"
        self._captions = None
        # The renderer's source is part of the id: a change to the drawing code changes the images.
        source = hashlib.sha256(Path(demo.__file__).read_bytes()).hexdigest()[:16]
        self.cache_id = f"demo-shapes:{split}:{len(self.demo)}:{image_size}:{seed}:{source}"

    def __len__(self) -> int:
        return len(self.demo)

    def image(self, i: int) -> Image.Image:
        return self.demo[i]["image"]

    def image_and_mask(self, i: int):
        """(image, [H, W] mask): 0 background, then 1 + the index of `task`'s class (see
        `rils.data.demo.segmentation_classes`)."""
        return self.demo.image_and_mask(i, self.task)

    @property
    def captions(self) -> list[list[str]]:
        # Rendering every image just for its captions is slow, so only retrieval pays for it.
        if self._captions is None:
            self._captions = [self.demo[i]["captions"] for i in range(len(self.demo))]
        return self._captions


# ------------------------------------------------------------------------------------ paths

class UnreadableImage(ValueError):
    """An image whose header reads but whose data does not decode (a truncated file). Raised in a
    DataLoader worker it reaches the main process re-made with the worker's traceback in its message;
    `reason()` is the one line that matters."""

    def reason(self) -> str:
        last = (str(self).strip().splitlines() or [""])[-1]
        return last.split(f"{type(self).__name__}: ", 1)[-1]


def _readable_image(path: Path) -> bool:
    """Whether the file opens as an image: its header only, no decode (cheap enough for every file)."""
    try:
        with Image.open(path) as im:
            return min(im.size) > 0
    except Exception:   # PIL raises many kinds for bytes that are not an image
        return False


class FileDataset(EvalDataset):
    """Image files on disk with labels or captions. A file that does not open as an image (a text
    file, an HTML error page, an empty file) is left out and counted in `skipped["unreadable_image"]`."""

    def __init__(self, files: list[Path], name: str, split: str, *, labels=None, classnames=None,
                 captions=None):
        if not files:
            raise ValueError(f"dataset {name} ({split}) holds no images")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{name}: {len(missing)} image file(s) not found, e.g. {missing[0]}")
        keep = [i for i, f in enumerate(files) if _readable_image(f)]
        if not keep:
            raise ValueError(f"dataset {name} ({split}): none of its {len(files)} files is a readable image")
        self.skipped = {"unreadable_image": len(files) - len(keep)} if len(keep) < len(files) else {}
        files = [files[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
        captions = None if captions is None else [captions[i] for i in keep]
        self.files, self.name, self.split = files, name, split
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.classnames, self.captions = classnames, captions
        self.cache_id = f"files:{_files_id(files)}"

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> Image.Image:
        try:
            with Image.open(self.files[i]) as im:
                return im.convert("RGB")
        except Exception as exc:   # its header read at load, its data does not decode
            raise UnreadableImage(f"image {self.files[i]} of {self.name} cannot be decoded "
                                  f"({type(exc).__name__}: {' '.join(str(exc).split())}); remove or replace it") from None


def _files_id(files: list[Path]) -> str:
    """Path, size and mtime of every file, in order: cheap, and changes when any image does."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _sorted_names(names) -> list[str]:
    names = sorted(set(names))
    # Integer labels sort numerically ("2" before "10"), anything else alphabetically.
    return sorted(names, key=int) if all(n.lstrip("-").isdigit() for n in names) else names


def image_folder(root: Path, split: str) -> FileDataset:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (an ImageFolder tree has one folder per class)")
    files, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                files.append(f)
                labels.append(k)
    dataset = FileDataset(files, str(root), split, labels=labels, classnames=classes)
    from .prompts import is_imagenet_synsets
    if is_imagenet_synsets(classes):   # ImageNet's own layout: names and templates of `imagenet1k`
        dataset.template_key = "imagenet1k"
    return dataset


def csv_dataset(path: Path, split: str, *, kind: str, image_key: str = "filepath",
                label_key: str = "label", caption_key: str = "caption", separator: str = ",") -> FileDataset:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=separator))
    value_key = caption_key if kind == "retrieval" else label_key
    columns = rows[0].keys() if rows else []
    for key in (image_key, value_key):
        if key not in columns:
            raise ValueError(f"{path} has no column {key!r} (columns: {', '.join(columns) or 'none'}); "
                             f"rename it with --csv-{'image' if key == image_key else kind_key(kind)}-key")
    # Relative image paths are relative to the CSV, so a dataset folder can move as a whole.
    resolve = lambda p: (path.parent / p) if not Path(p).is_absolute() else Path(p)  # noqa: E731
    if kind == "retrieval":
        index: dict[str, int] = {}
        files, captions = [], []
        for row in rows:
            key = row[image_key]
            if key not in index:  # rows of one image may be scattered; keep first-seen order
                index[key] = len(files)
                files.append(resolve(key))
                captions.append([])
            captions[index[key]].append(row[caption_key])
        return FileDataset(files, str(path), split, captions=captions)
    classnames = _sorted_names(row[label_key] for row in rows)
    lookup = {c: k for k, c in enumerate(classnames)}
    return FileDataset([resolve(r[image_key]) for r in rows], str(path), split,
                       labels=[lookup[r[label_key]] for r in rows], classnames=classnames)


def kind_key(kind: str) -> str:
    return "caption" if kind == "retrieval" else "label"


def resolve_split(path: str, split: str) -> Path:
    """The file or folder holding `split` of a path dataset (see the module docstring)."""
    if "{split}" in path:
        return Path(path.replace("{split}", split))
    p = Path(path)
    if p.is_dir():
        wanted = _HELD_OUT if split in _HELD_OUT else (split,)
        present = [s for s in ("train", *_HELD_OUT) if (p / s).is_dir()]
        for s in wanted:
            if s in present:
                return p / s
        if present:
            raise FileNotFoundError(f"{p} has split folders {', '.join(present)} but none for {split!r}")
    return p


def load_dataset(dataset: str, split: str = "test", *, kind: str = "classification",
                 task: str = "shape", fashion_mnist_root: str | None = None,
                 num_samples: int | None = None, image_size: int = 64, seed: int = 0,
                 image_key: str = "filepath", label_key: str = "label",
                 caption_key: str = "caption", csv_separator: str = ",") -> EvalDataset:
    """Load DATASET (a name or a path) for `kind` = "classification" or "retrieval".

    `task`, `num_samples`, `image_size` and `seed` apply to demo-shapes; the `*_key` options and
    `csv_separator` to CSV files.
    """
    if kind not in ("classification", "retrieval"):
        raise ValueError(f"kind must be 'classification' or 'retrieval', not {kind!r}")
    if dataset == "fashion-mnist":
        if kind == "retrieval":
            raise ValueError("fashion-mnist has no captions; retrieval needs demo-shapes or a caption CSV")
        return FashionMNIST(split, fashion_mnist_root)
    if dataset == "demo-shapes":
        return DemoShapesDataset(split, task, num_samples, image_size, seed)
    path = resolve_split(dataset, split)
    if not path.exists():
        raise FileNotFoundError(f"dataset {dataset!r} is neither a known name ({', '.join(NAMES)}) "
                                f"nor an existing path ({path} not found)")
    if "{split}" not in dataset and path == Path(dataset):
        split = WHOLE   # no split to choose from: the result says so, not the split that was asked for
    if path.is_dir():
        if kind == "retrieval":
            raise ValueError(f"{path} is an ImageFolder tree; retrieval needs a CSV of image path + caption")
        return image_folder(path, split)
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise ValueError(f"{path} is neither a folder nor a .csv/.tsv file")
    return csv_dataset(path, split, kind=kind, image_key=image_key, label_key=label_key,
                       caption_key=caption_key, separator="\t" if path.suffix.lower() == ".tsv"
                       and csv_separator == "," else csv_separator)


def aligned_labels(dataset: EvalDataset, classnames: list[str]) -> np.ndarray:
    """`dataset`'s labels as indices into `classnames` (a test split may lack some train classes)."""
    labels = dataset.require_labels()
    if dataset.classnames == classnames:
        return labels
    lookup = {c: k for k, c in enumerate(classnames)}
    unknown = sorted(set(dataset.classnames) - set(lookup))
    if unknown:
        raise ValueError(f"classes {unknown[:5]} of {dataset.name} ({dataset.split}) "
                         f"do not occur in the training split")
    remap = np.array([lookup[c] for c in dataset.classnames], dtype=np.int64)
    return remap[labels]
