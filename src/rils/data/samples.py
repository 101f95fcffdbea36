"""Turning one raw (image bytes or PIL image, caption) into training tensors, or a counted skip."""
from __future__ import annotations

import hashlib
import io
import json
import warnings

import numpy as np
import torch
from PIL import Image

# A decompression bomb is an error, not a warning, and never decoded.
Image.MAX_IMAGE_PIXELS = 64_000_000
# Only the web image formats are decoded: bytes that sniff as anything else (EPS, which would run
# Ghostscript; TIFF; PSD; ...) are a `bad_image`, whatever the file name says.
# (A camera's multi-picture JPEG opens through the JPEG entry; a format this Pillow lacks is left out.)
Image.init()
IMAGE_FORMATS = tuple(f for f in ("JPEG", "PNG", "WEBP", "GIF", "BMP") if f in Image.OPEN)
# Shorter side below this: a web placeholder (tracking pixel, spacer), not a picture -> `too_small`.
MIN_IMAGE_SIDE = 4
# Captions are cut to this many characters per context token before BPE: the tokenizer keeps only
# `context_length` tokens anyway, and BPE is quadratic in the length of a word (a 100,000-letter
# "word" would take minutes).
CAPTION_CHARS_PER_TOKEN = 32


class SkipSample(Exception):
    """A sample that cannot be trained on; `reason` is what the skip counters record."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# Each skip reason (the key in metrics.jsonl) in words, for messages about data that yields nothing.
REASONS = {
    "missing_file": "missing file", "unreadable_file": "unreadable file", "empty_image": "empty image file",
    "bad_image": "undecodable image", "too_small": f"image under {MIN_IMAGE_SIDE} px",
    "decompression_bomb": "decompression bomb", "bad_caption": "unreadable caption",
    "empty_caption": "empty caption", "no_caption": "missing caption (.txt)", "no_image": "missing image",
    "bad_shard": "damaged shard",
}


def describe_skips(counts) -> str:
    """'20 missing caption (.txt), 3 undecodable image': most frequent first."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {REASONS.get(reason, reason)}" for reason, n in ordered)


def sample_seed(run_seed: int, epoch: int, key) -> int:
    """A 63-bit seed that depends on the sample alone, not on rank, worker or batch position."""
    digest = hashlib.blake2b(f"{run_seed}:{epoch}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit (and 32-bit integer) greyscale is scaled to 8 bits, not clipped (PIL's
    convert would turn almost every pixel white); CMYK, palette, grey, alpha go through PIL."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L, I (a 16-bit PNG may open as either)
        arr = np.asarray(img).astype(np.float64)
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # the palette's transparency, without PIL's warning
    return img.convert("RGB")


def decode_image(data) -> Image.Image:
    """Bytes (or a PIL image) -> 8-bit RGB, or SkipSample: empty_image, decompression_bomb,
    bad_image (undecodable, truncated, not a web image format), too_small."""
    if isinstance(data, Image.Image):
        img = to_rgb(data)
    else:
        if not data:
            raise SkipSample("empty_image")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                warnings.simplefilter("ignore", UserWarning)   # PIL's "corrupt EXIF" and the like
                img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
                img.load()
                img = to_rgb(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise SkipSample("decompression_bomb") from None
        except Exception:
            raise SkipSample("bad_image") from None
    if min(img.size) < MIN_IMAGE_SIDE:
        raise SkipSample("too_small")
    return img


def decode_caption(data) -> str:
    """bytes or str (plain, or a JSON object with a "caption") -> non-empty str, or SkipSample:
    bad_caption (not UTF-8, broken JSON), empty_caption."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise SkipSample("bad_caption") from None
    if isinstance(data, str) and data.lstrip().startswith("{"):
        try:
            data = json.loads(data).get("caption", "")
        except (ValueError, AttributeError, RecursionError):
            raise SkipSample("bad_caption") from None
    if not isinstance(data, str) or not data.strip():
        raise SkipSample("empty_caption")
    try:
        data.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate out of a JSON "\ud800" escape
        raise SkipSample("bad_caption") from None
    return data.strip()


class SampleMaker:
    """Image + caption + per-sample seed -> dict of tensors. Random augmentation runs under a
    forked RNG seeded by the sample, so a sample looks the same whatever the worker, rank, or resume."""

    def __init__(self, transform, tokenizer, view_transform=None):
        self.transform = transform
        self.tokenizer = tokenizer
        self.view_transform = view_transform
        self.max_caption_chars = CAPTION_CHARS_PER_TOKEN * int(getattr(tokenizer, "context_length", None) or 77)

    def __call__(self, image, caption, seed: int) -> dict:
        """A sample dict, or SkipSample naming why not; never another exception."""
        text = decode_caption(caption)     # the cheap check first
        img = decode_image(image)
        text = text[:self.max_caption_chars]
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also queues a seed for every lazily
            # initialised device and records a stack trace for each, a third of a demo sample's time
            torch.default_generator.manual_seed(seed)
            out = {"image": self.transform(img), "text": self.tokenizer([text])[0],
                   "seed": torch.tensor(seed, dtype=torch.int64)}
            if self.view_transform is not None:
                out["views"] = torch.stack([self.view_transform(img), self.view_transform(img)])
        return out
