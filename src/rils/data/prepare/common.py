"""Shared pieces of `rils data prepare`: deterministic tar shards in the img2dataset layout, the
hash split, image shrinking, caption statistics and the manifest."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import statistics
import tarfile
from collections import Counter
from pathlib import Path

from PIL import Image

SHARD_NAME = re.compile(r"^\d{5}\.tar$")
BLANK = (255, 255, 255)


class MissingDataError(FileNotFoundError):
    """The source files are not installed; the message names the Debian package (CLI exit 2)."""


class Skip(Exception):
    """A source item that cannot become a sample; args[0] is the reason counted in the manifest."""


def stable_hash(text: str) -> int:
    """64-bit hash of a string, the same on every machine and Python version (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def split_of(item_id: str, val_fraction: float) -> str:
    """'val' for about val_fraction of the ids, decided by the id alone (stable under --limit,
    re-runs, reordering and added files)."""
    h = stable_hash("split:" + item_id)
    return "val" if h % 1_000_000 < round(val_fraction * 1_000_000) else "train"


# ---------------------------------------------------------------- images

def _to_rgba(im: Image.Image) -> Image.Image:
    if im.mode == "RGBA":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    if im.mode == "P" or (im.mode in ("L", "RGB") and "transparency" in im.info):
        return im.convert("RGBA")
    if im.mode in ("LA", "La", "PA", "RGBa"):
        return im.convert("RGBA")
    return im.convert("RGB").convert("RGBA")


def shrink_to_rgb(im: Image.Image, max_side: int, strip_pixels: int = 4_000_000) -> Image.Image:
    """Opened image -> RGB, transparent parts composited onto white, longest side <= max_side
    (aspect kept, never enlarged). Images far larger than max_side are first box-reduced by an
    integer factor strip by strip (alpha-correct: Pillow reduces RGBA premultiplied), so a
    20000x30000 RGBA needs no second full-size copy."""
    w, h = im.size
    factor = max(1, max(w, h) // (2 * max_side))
    if factor >= 2:
        out = Image.new("RGBA", (-(-w // factor), -(-h // factor)))
        rows = max(1, strip_pixels // max(1, w * factor)) * factor  # a multiple of factor
        for y0 in range(0, h, rows):
            strip = _to_rgba(im.crop((0, y0, w, min(h, y0 + rows))))
            out.paste(strip.reduce(factor), (0, y0 // factor))
        rgba = out
    else:
        rgba = _to_rgba(im)
    canvas = Image.new("RGBA", rgba.size, BLANK + (255,))
    canvas.alpha_composite(rgba)
    rgb = canvas.convert("RGB")
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# ---------------------------------------------------------------- shards

def clear_split_dir(folder: Path) -> None:
    """Remove shards a previous run left here (only our NNNNN.tar names), so none go stale."""
    if folder.is_dir():
        for f in folder.iterdir():
            if SHARD_NAME.match(f.name) and f.is_file():
                f.unlink()


class ShardWriter:
    """DIR/SPLIT/00000.tar, 00001.tar, ... with `shard_size` samples each. Members are written with
    fixed metadata (mtime 0, root:root, 0644), so the same input gives byte-identical shards.
    Keys are img2dataset-style: shard number then index inside the shard (e.g. 000030012)."""

    def __init__(self, folder: Path, shard_size: int):
        if shard_size < 1:
            raise ValueError("--shard-size must be at least 1")
        self.folder = Path(folder)
        self.shard_size = shard_size
        self.key_digits = max(4, len(str(shard_size - 1)))
        self.count = 0
        self.shards: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        clear_split_dir(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, files: dict[str, bytes]) -> str:
        """files: extension -> bytes (e.g. png, txt, json); returns the sample's key."""
        shard, index = divmod(self.count, self.shard_size)
        if index == 0:
            self._close_tar()
            path = self.folder / f"{shard:05d}.tar"
            self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)
            self.shards.append(path)
        key = f"{shard:05d}{index:0{self.key_digits}d}"
        for ext, data in files.items():
            self._add(f"{key}.{ext}", data)
        self.count += 1
        return key

    def _close_tar(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def close(self) -> None:
        self._close_tar()

    def pattern(self) -> str | None:
        """The brace pattern naming exactly these shards (absolute), for data.path=..."""
        if not self.shards:
            return None
        return str(self.folder.resolve() / f"{{00000..{len(self.shards) - 1:05d}}}.tar")


def sample_files(image: bytes, image_ext: str, caption: str, meta: dict) -> dict[str, bytes]:
    return {image_ext: image, "txt": caption.encode("utf-8"),
            "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")}


# ---------------------------------------------------------------- manifest

def caption_stats(captions: list[str]) -> dict:
    if not captions:
        return {"count": 0}
    chars = [len(c) for c in captions]
    words = [len(c.split()) for c in captions]
    counts = Counter(captions)
    return {
        "count": len(captions),
        "unique": len(counts),
        "chars": {"min": min(chars), "mean": round(statistics.fmean(chars), 1),
                  "median": statistics.median(chars), "max": max(chars)},
        "words": {"min": min(words), "mean": round(statistics.fmean(words), 2),
                  "median": statistics.median(words), "max": max(words)},
        "most_common": dict(counts.most_common(10)),
    }


def write_manifest(out: Path, manifest: dict) -> Path:
    path = Path(out) / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def split_entry(writer: ShardWriter, captions: list[str], extra: dict | None = None) -> dict:
    entry = {"samples": writer.count, "shards": len(writer.shards), "pattern": writer.pattern(),
             "caption_stats": caption_stats(captions)}
    if extra:
        entry.update(extra)
    return entry
