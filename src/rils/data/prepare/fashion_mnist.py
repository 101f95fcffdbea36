"""Fashion-MNIST (Debian `dataset-fashion-mnist`: four gzipped IDX files) -> captioned shards.

Official split kept: 60,000 train, 10,000 test. Images stay 28x28 (grayscale stored as RGB PNG; the
training transform resizes). Captions name the class in varied wording, picked by a hash of the
sample's id: "a photo of a sneaker", "a black and white photo of an ankle boot", "product photo:
trouser", ...

The IDX reader (`read_idx`, `load_split`), the file names and the install location here are also
what `rils eval`'s `fashion-mnist` dataset reads with (rils.eval.datasets.FashionMNIST).
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from .common import MissingDataError, stable_hash

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

# Official class names (T-shirt/top, Trouser, ...) in natural lower case, with the noun phrases the
# captions use: (class name, with an article, bare).
CLASSES = (
    ("t-shirt/top", ("a t-shirt", "a top", "a t-shirt or top"), ("t-shirt", "top", "t-shirt/top")),
    ("trouser", ("a pair of trousers", "a trouser"), ("trouser", "trousers")),
    ("pullover", ("a pullover",), ("pullover",)),
    ("dress", ("a dress",), ("dress",)),
    ("coat", ("a coat",), ("coat",)),
    ("sandal", ("a sandal",), ("sandal",)),
    ("shirt", ("a shirt",), ("shirt",)),
    ("sneaker", ("a sneaker",), ("sneaker",)),
    ("bag", ("a bag",), ("bag",)),
    ("ankle boot", ("an ankle boot",), ("ankle boot",)),
)
CLASS_NAMES = tuple(c[0] for c in CLASSES)

TEMPLATES = (
    "a photo of {a}",
    "a black and white photo of {a}",
    "{a}",
    "product photo: {bare}",
    "a grayscale image of {a}",
    "a low-resolution photo of {a}",
    "{bare}",
    "a small picture of {a}",
    "fashion item: {bare}",
    "a centered photo of {a}",
)


def caption_for(item_id: str, label: int) -> tuple[str, int]:
    """(caption, template index), a pure function of the id and the label."""
    _, with_article, bare = CLASSES[label]
    h = stable_hash("caption:" + item_id)
    t = h % len(TEMPLATES)
    caption = TEMPLATES[t].format(a=with_article[(h >> 16) % len(with_article)],
                                  bare=bare[(h >> 24) % len(bare)])
    return caption, t


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array: (n,) labels or (n, rows, cols) images."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {body.size} bytes of data for shape {shape}")
    return body.reshape(shape)


def check_install(root: Path) -> dict[str, tuple[Path, Path]]:
    paths = {split: (root / img, root / lab) for split, (img, lab) in FILES.items()}
    missing = [p for pair in paths.values() for p in pair if not p.is_file()]
    if missing:
        raise MissingDataError(
            f"Fashion-MNIST files not found under {root} (missing {missing[0].name}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}): install the Debian package "
            f"{PACKAGE} (sudo apt-get install {PACKAGE}) or pass --root")
    return paths


def load_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{images_path.name}/{labels_path.name}: shapes {images.shape} and {labels.shape} do not pair")
    if labels.size and labels.max() >= len(CLASSES):
        raise ValueError(f"{labels_path.name}: label {int(labels.max())} out of range 0..9")
    return images, labels
