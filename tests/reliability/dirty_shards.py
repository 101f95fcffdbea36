"""A 1,000-sample webdataset shard set in which 10% of the samples are broken in ten ways, and the
good ones include every awkward-but-valid kind (CMYK, 16-bit, a PNG named .jpg, a 10,000-character
caption, ...). Built in well under a second."""
import io
import json
import struct
import zlib
from collections import Counter

import numpy as np
import webdataset as wds
from PIL import Image

N_SHARDS, PER_SHARD = 4, 250
TOTAL = N_SHARDS * PER_SHARD

# what each broken kind is counted as
BROKEN = {
    "truncated_jpeg": "bad_image", "zero_bytes": "empty_image", "text_named_jpg": "bad_image",
    "one_pixel": "too_small", "bomb": "decompression_bomb", "non_utf8_caption": "bad_caption",
    "broken_json_caption": "bad_caption", "empty_caption": "empty_caption", "no_caption": "no_caption",
    "no_image": "no_image",
}
# valid and awkward: must be trained on
ODD_GOOD = ["cmyk", "png16", "png_named_jpg", "long_caption", "json_caption", "palette_alpha", "grey", "webp",
            "non_ascii_caption"]


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bomb(width=200_000, height=200_000):
    """A PNG whose header claims 40 gigapixels (and whose data is a few bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def kind_of(i: int) -> str:
    """Sample i's kind: every 10th is broken (10 of each broken kind), 10 of each odd good kind."""
    if i % 10 == 3:
        return list(BROKEN)[(i // 10) % len(BROKEN)]
    if i % 10 == 7 and (i // 10) < 10 * len(ODD_GOOD):
        return ODD_GOOD[(i // 10) % len(ODD_GOOD)]
    return "plain"


def make_sample(i: int, rng) -> dict:
    kind = kind_of(i)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    caption = f"a picture number {i} of {['red', 'green', 'blue'][i % 3]} noise"
    jpg = encode(Image.fromarray(rgb), "JPEG", quality=80)
    s = {"jpg": jpg, "txt": caption}
    if kind == "truncated_jpeg":
        s["jpg"] = jpg[:len(jpg) // 2]
    elif kind == "zero_bytes":
        s["jpg"] = b""
    elif kind == "text_named_jpg":
        s["jpg"] = b"<html><body>404 Not Found</body></html>"
    elif kind == "one_pixel":
        s["jpg"] = encode(Image.new("RGB", (1, 1), (200, 10, 10)), "JPEG")
    elif kind == "bomb":
        s = {"png": png_bomb(), "txt": caption}
    elif kind == "non_utf8_caption":
        s["txt"] = "caf\u00e9 cr\u00e8me".encode("latin-1")
    elif kind == "broken_json_caption":
        s = {"jpg": jpg, "json": '{"caption": "unterminated'}
    elif kind == "empty_caption":
        s["txt"] = "  \n "
    elif kind == "no_caption":
        del s["txt"]
    elif kind == "no_image":
        del s["jpg"]
    elif kind == "cmyk":
        s["jpg"] = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG")
    elif kind == "png16":
        s = {"png": encode(Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), "PNG"), "txt": caption}
    elif kind == "png_named_jpg":
        s["jpg"] = encode(Image.fromarray(rgb), "PNG")
    elif kind == "long_caption":
        s["txt"] = (caption + " ") * (10_000 // (len(caption) + 1)) + "x" * (10_000 % (len(caption) + 1))
    elif kind == "json_caption":
        s = {"jpg": jpg, "json": json.dumps({"caption": caption, "width": 32})}
    elif kind == "palette_alpha":
        s = {"png": encode(Image.fromarray(rgb).convert("P"), "PNG", transparency=0), "txt": caption}
    elif kind == "grey":
        s["jpg"] = encode(Image.fromarray(rgb[..., 0]), "JPEG")
    elif kind == "webp":
        s = {"webp": encode(Image.fromarray(rgb), "WEBP"), "txt": caption}
    elif kind == "non_ascii_caption":
        s["txt"] = "\u732b\u304c\u5ea7\u3063\u3066\u3044\u308b \u0645\u0631\u062d\u0628\u0627 \U0001f431 na\u00efve"
    return s


def write_dirty_shards(folder) -> str:
    """Writes the shards; returns their brace pattern."""
    rng = np.random.default_rng(0)
    i = 0
    for shard in range(N_SHARDS):
        with wds.TarWriter(str(folder / f"{shard:05d}.tar")) as sink:
            for _ in range(PER_SHARD):
                sink.write({"__key__": f"s{i:06d}", **make_sample(i, rng)})
                i += 1
    return f"{folder}/{{00000..{N_SHARDS - 1:05d}}}.tar"


def expected_skips() -> Counter:
    return Counter(BROKEN[k] for k in map(kind_of, range(TOTAL)) if k in BROKEN)


def n_good() -> int:
    return TOTAL - sum(expected_skips().values())
