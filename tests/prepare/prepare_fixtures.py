"""Tiny synthetic installs of the datasets `rils data prepare` reads, written by the tests."""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

SVG = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="100" height="100">
  <metadata>
    <rdf:RDF>
      <cc:Work rdf:about="">
        {title}{description}
        <dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
        <dc:publisher><cc:Agent rdf:about="http://www.openclipart.org/"><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>
        <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
        <dc:rights><cc:Agent><dc:title>Public Domain</dc:title></cc:Agent></dc:rights>
      </cc:Work>
    </rdf:RDF>
  </metadata>
  <rect width="100" height="100"/>
</svg>
"""


def svg_text(title=None, description=None, keywords=(), creator="Some Author") -> str:
    return SVG.format(
        title=f"<dc:title>{title}</dc:title>" if title is not None else "",
        description=f"<dc:description>{description}</dc:description>" if description is not None else "",
        keywords="".join(f"<rdf:li>{k}</rdf:li>" for k in keywords), creator=creator)


def rgba_drawing(size=(60, 40)) -> Image.Image:
    """A red square on a transparent background (transparent pixels are black: compositing must
    turn them white, not dark)."""
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    w, h = size
    im.paste((255, 0, 0, 255), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return im


def write_pair(root: Path, rel: str, image: Image.Image | bytes | None, svg: str | None) -> None:
    png, svgp = root / "png" / f"{rel}.png", root / "svg" / f"{rel}.svg"
    png.parent.mkdir(parents=True, exist_ok=True)
    svgp.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, Image.Image):
        image.save(png)
    elif image is not None:
        png.write_bytes(image)
    if svg is not None:
        svgp.write_text(svg, encoding="utf-8")


def make_openclipart(root: Path) -> Path:
    """Seven PNG paths: four good drawings, one symlinked duplicate, one without usable text,
    one unreadable, one too small."""
    write_pair(root, "animals/birds/eagle_01", rgba_drawing((300, 200)),
               svg_text("Eagle", "A bald eagle in flight. Drawn with Inkscape.", ["bird", "eagle", "hash", "animal"],
                        creator="Jane Doe"))
    write_pair(root, "computer/icons/lemon-theme/cdrom_unmount", rgba_drawing((48, 48)),
               svg_text("Lemon SVG theme", None, ["icon", "hash", "computer", "icons", "theme", "device"]))
    pal = rgba_drawing((50, 70)).convert("RGB").convert("P")
    pal.info["transparency"] = 0
    write_pair(root, "food/fruit/green_pear_jane_doe_01", pal,
               svg_text("Green Pear", "jane@example.org", ["food", "fruit", "pear"], creator="Jane Doe"))
    write_pair(root, "shapes/grey_square", Image.new("L", (30, 30), 128), None)
    (root / "png/shapes/eagle_copy.png").symlink_to(os.path.relpath(root / "png/animals/birds/eagle_01.png",
                                                                     root / "png/shapes"))
    write_pair(root, "unsorted/ec2.py_fearzip_01", Image.new("RGB", (20, 20), "blue"),
               svg_text("ec2.py", None, ["unsorted"], creator="FearZip"))
    write_pair(root, "animals/broken", b"\x89PNG\r\n\x1a\nnot really", svg_text("Broken Bird"))
    write_pair(root, "animals/speck", Image.new("RGB", (3, 3)), svg_text("Speck"))
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fashion_mnist(root: Path, n_train=23, n_test=7) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root
