"""Where image-text pairs come from: the demo corpus, a CSV, a folder with caption sidecars
(map-style, exact epochs), or webdataset shards in the img2dataset layout (streamed)."""
from __future__ import annotations

import csv
from pathlib import Path

import webdataset as wds

from .samples import SkipSample
from .shards import count_samples, listed_sizes, local_path

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class DemoSource:
    """The embedded, procedurally rendered corpus (no files)."""

    def __init__(self, num_samples: int, image_size: int, seed: int = 0, one_color: bool = False,
                 colorless_captions: float = 0.0, max_shapes: int = 3):
        from .demo import DemoShapes
        self.ds = DemoShapes("train", num_samples=num_samples or None, image_size=image_size, seed=seed,
                             one_color=one_color, colorless_captions=colorless_captions, max_shapes=max_shapes)

    def __len__(self):
        return len(self.ds)

    def raw(self, i):
        item = self.ds[i]
        return item["image"], item["caption"]


class PairListSource:
    """(image path, caption) pairs; images are read as bytes so a bad file is a counted skip.
    A caption of None means the caption file is missing (`no_caption`)."""

    def __init__(self, pairs: list[tuple[Path, str | None]]):
        if not pairs:
            raise ValueError("the data source holds no image-caption pairs")
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def raw(self, i):
        path, caption = self.pairs[i]
        if caption is None:
            raise SkipSample("no_caption")
        try:
            return path.read_bytes(), caption
        except (FileNotFoundError, NotADirectoryError):
            raise SkipSample("missing_file") from None   # not an empty image: say what it is
        except OSError:
            raise SkipSample("unreadable_file") from None


def csv_source(path: str, image_col: str = "filepath", caption_col: str = "caption", sep: str = ",") -> PairListSource:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.path: CSV file not found: {path}")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=sep)
        for col in (image_col, caption_col):
            if col not in (reader.fieldnames or []):
                raise ValueError(f"{path}: no column {col!r} (columns: {', '.join(reader.fieldnames or [])})")
        pairs = [((path.parent / row[image_col]).resolve(), row[caption_col] or "") for row in reader]
    return PairListSource(pairs)


def folder_source(path: str) -> PairListSource:
    """Images anywhere under `path`, each with a caption in a sidecar file of the same stem
    (`.txt`), as img2dataset's `files` output writes them. An image without one is skipped
    (`no_caption`)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"data.path: folder not found: {root}")
    pairs = []
    for img in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
        txt = img.with_suffix(".txt")
        pairs.append((img, txt.read_text(encoding="utf-8", errors="replace") if txt.is_file() else None))
    return PairListSource(pairs)


def expand_shards(pattern: str, key: str = "data.path") -> list[str]:
    """Brace patterns like `data/{00000..00099}.tar`; '::' joins several patterns. `key` names the
    pattern's source in the errors."""
    urls = wds.shardlists.expand_urls(pattern)
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    missing = [u for u in local if not Path(u).is_file()]
    if not urls:
        raise ValueError(f"{key}: no shards match {pattern!r}")
    if missing:
        raise FileNotFoundError(f"{key}: {len(missing)} shard(s) not found, first: {missing[0]}")
    return urls


def shard_sizes(urls: list[str], listed: dict | None = None) -> dict[str, int]:
    """Samples per local shard: as `sizes.json` or img2dataset's `*_stats.json` state it
    (`listed_sizes`; pass it in if already read), else from the tar headers (no data is read; a
    truncated shard counts what could be read). Remote shards are left out."""
    listed = listed_sizes(urls) if listed is None else listed
    return {u: listed[u] if u in listed else count_samples(u) for u in urls if local_path(u) is not None}


def count_shard_samples(urls: list[str], listed: dict | None = None) -> int:
    """Number of samples in the local shards, for the epoch length (remote shards count 0: set
    data.num_samples for them)."""
    return sum(shard_sizes(urls, listed).values())
