"""An embedded, procedurally rendered image-text corpus for ``make demo``.

The demo pre-trains a tiny RILS/CLIP model on a CPU in a few minutes and then
evaluates zero-shot classification and retrieval on a held-out split. Real
image-text data would need downloads, disk and hours; this corpus needs none of
them: every sample is generated from ``(seed, split, index)``, so nothing is
stored or fetched and every run sees byte-identical data.

Each image shows one to three coloured shapes on a light, gently shaded
background. The *dominant* shape is the largest (clearly bigger than the
others), is drawn last so it is never occluded, and gives the sample's labels
(``shape``, ``color``). Every caption names the dominant shape, in varied
wording, so a contrastive model has to learn the shape and colour words to
match images with captions, which is what zero-shot evaluation then probes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "COLORS", "DemoShapes", "segmentation_classes", "shaded_background", "zeroshot_templates"]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
# Saturated colours, each with a channel <= 60 (before jitter), so none can be
# mistaken for the light, low-saturation backgrounds (all channels >= ~185).
_RGB = np.array([(215, 35, 35), (40, 160, 60), (35, 75, 215),
                 (245, 222, 25), (135, 55, 180), (245, 130, 20)])

_DEFAULT_SIZES = {"train": 20000, "val": 1000}
_SPLIT_IDS = {"train": 0, "val": 1}
# Separate random streams per sample, so labels() can draw the layout without
# rendering, and changing the caption wording never moves the pixels.
_LAYOUT, _RENDER, _CAPTION = 0, 1, 2
_SUPERSAMPLE = 2  # draw at 2x and box-filter down: cheap antialiasing
# Every shape fits inside a circle of radius _EXTENT * size around its centre;
# placement keeps that circle inside the image and apart from the others' circles,
# so shapes never overlap or get clipped, and captions and seg stay true.
_EXTENT = 0.56
_DOMINANT_SIZE = (0.42, 0.58)  # fraction of the image side
_SMALL_SIZE = (0.18, 0.25)     # small enough that the dominant wins the pixel count in seg
_NUMBERS = ("one", "two", "three")


@dataclass(frozen=True)
class _Shape:
    kind: int
    color: int
    rgb: tuple[int, int, int]
    x: float      # centre, in fractions of the image side
    y: float
    size: float   # diameter, in fractions of the image side
    angle: float  # radians; small, so a square never turns into a diamond


def _dominant_labels(rng: np.random.Generator) -> tuple[int, int]:
    # Drawn first and uniformly, so labels() is cheap and classes are balanced.
    return int(rng.integers(len(SHAPES))), int(rng.integers(len(COLORS)))


def _make_shape(rng, kind, color, x, y, size) -> _Shape:
    rgb = np.clip(_RGB[color] + rng.integers(-12, 13, 3), 0, 255)
    return _Shape(kind, color, tuple(int(c) for c in rgb), x, y, size,
                  float(rng.uniform(-0.2, 0.2)))


def _make_layout(rng: np.random.Generator, one_color: bool = False, max_shapes: int = 3) -> list[_Shape]:
    """Shapes of one image, dominant first. Resolution-independent. With `one_color`, every shape
    takes the dominant one's colour (the random draws stay the same, so only colours change)."""
    kind, color = _dominant_labels(rng)
    size = rng.uniform(*_DOMINANT_SIZE)
    m = _EXTENT * size
    x, y = rng.uniform(m, 1 - m, 2)
    shapes = [_make_shape(rng, kind, color, x, y, size)]
    u = rng.random()
    n_others = min(0 if u < 0.4 else 1 if u < 0.75 else 2, max_shapes - 1)
    # Distinct kinds per image: captions never need plurals, and seg (which
    # labels kinds, not instances) cannot add up two small shapes of one kind.
    others = rng.permutation([k for k in range(len(SHAPES)) if k != kind])[:n_others]
    for k in others:
        size = rng.uniform(*_SMALL_SIZE)
        m = _EXTENT * size
        for _ in range(30):  # rejection sampling; give up quietly if it is too crowded
            x, y = rng.uniform(m, 1 - m, 2)
            if all(math.hypot(x - s.x, y - s.y) >= _EXTENT * (size + s.size) for s in shapes):
                other = int(rng.integers(len(COLORS)))
                shapes.append(_make_shape(rng, int(k), color if one_color else other, x, y, size))
                break
    return shapes


def _polygons(name: str) -> list[list[tuple[float, float]]]:
    """Outline(s) in units of the radius; all fit within 2 * _EXTENT = 1.12 radii."""
    if name == "square":
        return [[(-0.78, -0.78), (0.78, -0.78), (0.78, 0.78), (-0.78, 0.78)]]
    if name == "triangle":
        return [[(1.1 * math.cos(a), 1.1 * math.sin(a))
                 for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]]
    if name == "star":
        return [[((1.08 if j % 2 == 0 else 0.5) * math.cos(-math.pi / 2 + j * math.pi / 5),
                  (1.08 if j % 2 == 0 else 0.5) * math.sin(-math.pi / 2 + j * math.pi / 5))
                 for j in range(10)]]
    if name == "cross":
        w = 0.38
        return [[(-1, -w), (1, -w), (1, w), (-1, w)], [(-w, -1), (w, -1), (w, 1), (-w, 1)]]
    raise ValueError(f"no polygon for shape {name!r}")


_POLYGONS = {name: _polygons(name) for name in ("square", "triangle", "star", "cross")}


def _draw(draws, values, shape: _Shape, side: int) -> None:
    """Draw one shape with each ImageDraw in ``draws`` using the matching fill value."""
    cx, cy, r = shape.x * side, shape.y * side, shape.size * side / 2
    name = SHAPES[shape.kind]
    if name in ("circle", "ring"):
        box = [cx - r, cy - r, cx + r, cy + r]
        for d, v in zip(draws, values):
            if name == "circle":
                d.ellipse(box, fill=v)
            else:
                d.ellipse(box, outline=v, width=max(1, round(0.45 * r)))
        return
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    for poly in _POLYGONS[name]:
        pts = [(cx + r * (c * px - s * py), cy + r * (s * px + c * py)) for px, py in poly]
        for d, v in zip(draws, values):
            d.polygon(pts, fill=v)


def shaded_background(rng: np.random.Generator, n: int) -> Image.Image:
    """An n x n light, low-saturation RGB background with a gentle gradient and grain, so
    "background" is not one flat colour a model could key on (also used by shapes-dense)."""
    t = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    gx, gy = rng.uniform(-12, 12, 2)
    bg = (rng.uniform(215, 243) + rng.uniform(-8, 8, 3)).astype(np.float32) \
        + (gx * t[None, :] + gy * t[:, None])[..., None] \
        + 2.0 * rng.standard_normal((n, n, 1), dtype=np.float32)
    return Image.fromarray(np.clip(bg + 0.5, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- captions

def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _where(s: _Shape) -> str:
    h = "left" if s.x < 0.35 else "right" if s.x > 0.65 else ""
    v = "top" if s.y < 0.35 else "bottom" if s.y > 0.65 else ""
    if h and v:
        return f"in the {v} {h} corner"
    return f"on the {h}" if h else f"at the {v}" if v else "in the middle"


def _captions(shapes: list[_Shape], rng: np.random.Generator) -> list[str]:
    """Five different captions; each names the dominant shape's colour and kind."""
    dom, others = shapes[0], shapes[1:]

    def ph(s, size=None):  # "large red circle"
        return " ".join(([size] if size else []) + [COLORS[s.color], SHAPES[s.kind]])

    def sized(s):  # size words are true by construction: dominant large, others small
        return ph(s, _pick(rng, ("large", "big")) if s is dom else "small")

    n = len(shapes)
    count = f"{_NUMBERS[n - 1]} shape{'s' if n > 1 else ''}"
    with_sizes = rng.random() < 0.5
    styles = [
        lambda: _join([_a(sized(s) if with_sizes else ph(s)) for s in shapes]),
        lambda: "a photo of " + _join([_a(ph(s)) for s in shapes]),
        lambda: f"{count}: " + _join([f"{_a(ph(s))} {_where(s)}" for s in shapes]),
        lambda: ", ".join(ph(shapes[j]) for j in rng.permutation(n)),
        lambda: f"the largest shape is {_a(ph(dom))}"
                + (f", next to {_join([_a(ph(s)) for s in others])}" if others else ""),
        lambda: _join([_a(ph(s)) for s in shapes]) + " on a light background",
        lambda: f"a simple drawing of {_a(sized(dom))}"
                + (f" with {_join([_a(sized(s)) for s in others])}" if others else ""),
        lambda: _join([f"{_a(SHAPES[s.kind])} in {COLORS[s.color]}" for s in shapes]),
        lambda: (f"{count}, the biggest one is {_a(ph(dom))}" if others
                 else f"a single {ph(dom)} {_where(dom)}"),
    ]
    out: list[str] = []
    for j in rng.permutation(len(styles)):
        text = styles[j]()
        if text not in out:
            out.append(text)
        if len(out) == 5:
            break
    return out


_COLOR_WORDS = "|".join(COLORS)


def _without_colors(caption: str) -> str:
    """"a red circle in the middle and a small blue star" -> "a circle in the middle and a small star"."""
    import re

    text = re.sub(rf"\s+in ({_COLOR_WORDS})\b", "", caption)
    text = re.sub(rf"\b({_COLOR_WORDS})\s+", "", text)
    return re.sub(r"\b(a|an) ([a-z]+)", lambda m: _a(m.group(2)), text)   # "an orange ring" -> "a ring"


# ----------------------------------------------------------------- dataset

class DemoShapes(torch.utils.data.Dataset):
    """Coloured-shape images with captions, labels and segmentation, rendered on the fly."""

    def __init__(self, split: str = "train", num_samples: int | None = None,
                 image_size: int = 64, seed: int = 0, one_color: bool = False,
                 colorless_captions: float = 0.0, max_shapes: int = 3):
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be one of {sorted(_SPLIT_IDS)}, got {split!r}")
        if num_samples is None:
            num_samples = _DEFAULT_SIZES[split]
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.split, self.num_samples, self.image_size, self.seed = split, num_samples, image_size, seed
        # All shapes of an image in one colour: a caption can then not be matched by its colours
        # alone, so contrastive training has to learn the shape words too (the demo uses it).
        self.one_color = bool(one_color)
        # This share of captions names the shapes without their colours, so that matching them
        # takes the shape words (drawn after every other choice: 0 leaves the corpus unchanged).
        if not 0.0 <= colorless_captions <= 1.0:
            raise ValueError(f"colorless_captions must be in [0, 1], got {colorless_captions!r}")
        self.colorless_captions = float(colorless_captions)
        if max_shapes not in (1, 2, 3):
            raise ValueError(f"max_shapes must be 1, 2 or 3, got {max_shapes!r}")
        self.max_shapes = max_shapes   # fewer shapes per image (the dominant one always drawn)
        self._labels: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return self.num_samples

    def _rng(self, i: int, stream: int) -> np.random.Generator:
        # A fixed-length entropy list: (seed, split, index, stream) -> one
        # independent stream. Train and val differ in the split entry, so the
        # val images come from streams training never sees.
        return np.random.default_rng([self.seed, _SPLIT_IDS[self.split], i, stream])

    def _index(self, i) -> int:
        i = int(i)
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for {self.num_samples} samples")
        return i

    def __getitem__(self, i) -> dict:
        i = self._index(i)
        shapes = _make_layout(self._rng(i, _LAYOUT), self.one_color, self.max_shapes)
        image, seg = self._render(shapes, self._rng(i, _RENDER))
        rng = self._rng(i, _CAPTION)
        captions = _captions(shapes, rng)
        caption = captions[int(rng.integers(len(captions)))]
        if self.colorless_captions and rng.random() < self.colorless_captions:
            caption = _without_colors(caption)
        return {"image": image, "caption": caption,
                "captions": captions, "shape": shapes[0].kind, "color": shapes[0].color,
                "seg": seg}

    def image_and_mask(self, i, task: str = "shape") -> tuple[Image.Image, np.ndarray]:
        """Sample i's image and its [H, W] uint8 segmentation for `task` (labels: see
        `segmentation_classes(task)`), without drawing its captions."""
        _check_task(task)
        i = self._index(i)
        shapes = _make_layout(self._rng(i, _LAYOUT), self.one_color, self.max_shapes)
        image, seg = self._render(shapes, self._rng(i, _RENDER))
        if task == "color":
            # Kinds are distinct within an image (see _make_layout), so kind -> colour is a lookup.
            lut = np.zeros(len(SHAPES) + 1, dtype=np.uint8)
            for s in shapes:
                lut[s.kind + 1] = s.color + 1
            seg = lut[seg]
        return image, seg

    def segmentation(self, i, task: str = "shape") -> np.ndarray:
        """[H, W] uint8 mask of sample i: 0 background, else 1 + the SHAPES index of the shape
        covering the pixel (task "shape": the sample's `seg`) or 1 + its COLORS index ("color")."""
        return self.image_and_mask(i, task)[1]

    def _render(self, shapes: list[_Shape], rng: np.random.Generator):
        n, k = self.image_size, _SUPERSAMPLE
        bg = shaded_background(rng, n)
        # Nearest upsampling then box reduce returns the background unchanged
        # and antialiases only the shape edges.
        image = bg.resize((n * k, n * k), Image.NEAREST)
        lab = Image.new("L", (n * k, n * k))
        draws = (ImageDraw.Draw(image), ImageDraw.Draw(lab))
        for s in reversed(shapes):  # dominant last, so it is never occluded
            _draw(draws, (s.rgb, s.kind + 1), s, n * k)
        # A pixel belongs to a shape when at least half of its subpixels do.
        # Shapes never overlap (see _EXTENT), so the block maximum is the
        # shape's label rather than an arbitrary one of two.
        lab = np.asarray(lab)
        subs = [lab[i::k, j::k] for i in range(k) for j in range(k)]
        covered = 2 * sum((sub > 0).view(np.uint8) for sub in subs) >= k * k
        seg = np.where(covered, np.maximum.reduce(subs), 0).astype(np.uint8)
        return image.reduce(k), seg

    def labels(self, task: str) -> list[int]:
        _check_task(task)
        if self._labels is None:
            pairs = [_dominant_labels(self._rng(i, _LAYOUT)) for i in range(self.num_samples)]
            self._labels = {"shape": [p[0] for p in pairs], "color": [p[1] for p in pairs]}
        return list(self._labels[task])

    @staticmethod
    def classnames(task: str) -> list[str]:
        return list(_check_task(task))


def _check_task(task: str) -> tuple[str, ...]:
    """The class names a task labels by (SHAPES or COLORS); ValueError for another task."""
    if task == "shape":
        return SHAPES
    if task == "color":
        return COLORS
    raise ValueError(f"task must be 'shape' or 'color', got {task!r}")


def segmentation_classes(task: str = "shape") -> list[str]:
    """Mask label k -> class name for `DemoShapes.segmentation(i, task)`: background, then the
    shapes (task "shape") or the colours (task "color")."""
    return ["background", *_check_task(task)]


def zeroshot_templates(task: str) -> list[str]:
    """Prompt templates (``{}`` = class name) for zero-shot classification."""
    if task == "shape":
        return ["a photo of a {}.", "a {} shape.", "a drawing of a {}.",
                "a large {}.", "the largest shape is a {}."]
    if task == "color":
        return ["a {} shape.", "something {}.", "a photo of a {} object.",
                "a shape in {}.", "the largest shape is {}."]
    raise ValueError(f"task must be 'shape' or 'color', got {task!r}")
