"""Turning one raw (image bytes or PIL image, caption) into training tensors, or a counted skip."""
from __future__ import annotations

import hashlib
import io
import json
import warnings

import torch
from PIL import Image

# A decompression bomb is an error, not a warning, and never decoded.
Image.MAX_IMAGE_PIXELS = 64_000_000


class SkipSample(Exception):
    """A sample that cannot be trained on; `reason` is what the skip counters record."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def sample_seed(run_seed: int, epoch: int, key) -> int:
    """A 63-bit seed that depends on the sample alone, not on rank, worker or batch position."""
    digest = hashlib.blake2b(f"{run_seed}:{epoch}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def decode_image(data) -> Image.Image:
    if isinstance(data, Image.Image):
        return data.convert("RGB")
    if not data:
        raise SkipSample("empty_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
            return img.convert("RGB")
    except SkipSample:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SkipSample("decompression_bomb") from None
    except Exception:
        raise SkipSample("bad_image") from None


def decode_caption(data) -> str:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SkipSample("bad_caption") from None
    if isinstance(data, str) and data.lstrip().startswith("{"):
        try:
            data = json.loads(data).get("caption", "")
        except (ValueError, AttributeError):
            raise SkipSample("bad_caption") from None
    if not isinstance(data, str) or not data.strip():
        raise SkipSample("empty_caption")
    return data.strip()


class SampleMaker:
    """Image + caption + per-sample seed -> dict of tensors. Random augmentation runs under a
    forked RNG seeded by the sample, so a sample looks the same whatever the worker, rank, or resume."""

    def __init__(self, transform, tokenizer, view_transform=None):
        self.transform = transform
        self.tokenizer = tokenizer
        self.view_transform = view_transform

    def __call__(self, image, caption, seed: int) -> dict:
        img = decode_image(image)
        text = decode_caption(caption)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = {"image": self.transform(img), "text": self.tokenizer([text])[0],
                   "seed": torch.tensor(seed, dtype=torch.int64)}
            if self.view_transform is not None:
                out["views"] = torch.stack([self.view_transform(img), self.view_transform(img)])
        return out
