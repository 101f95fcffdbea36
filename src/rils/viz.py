"""Pictures: per-patch semantic maps in the language space, and training curves.

    rils viz semantic-map --checkpoint CKPT --image IMG --texts "a red circle" "a blue square" --out map.png
    rils viz curves RUN_DIR --out curves.png

semantic-map: p of Eq. 8 on the intact image: for each patch k, the softmax over the given texts l
of <normalise(θ(f^k)), normalise(z^T_l)> / τ1 (τ1: the checkpoint's, or `--tau`). The figure has
one panel with the image as the model sees it (eval transform: short side resized, centre crop),
one heatmap panel per text (p of that text over the image, titled with the text) and a last
panel with the argmax text of every patch, with a legend. IMG is an image file or
`demo-shapes:SPLIT:INDEX` (a sample of the demo corpus).

curves: `metrics.jsonl` of a run folder (or the file itself): losses (loss, clip_loss, recon_loss,
pixel_loss, ssl_loss), accuracies (i2t_acc, matched_frac) and lr against the step, whichever are
present. A step logged twice (a resumed run replays steps after its checkpoint) keeps its last value.

Both use matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .precision import PRECISIONS

if TYPE_CHECKING:
    import numpy as np
    import torch
# numpy and torch are imported where they are used: `rils viz --help` must not wait for torch.

CURVE_GROUPS = (
    ("loss", ("loss", "clip_loss", "recon_loss", "pixel_loss", "ssl_loss")),
    ("accuracy", ("i2t_acc", "matched_frac")),
    ("learning rate", ("lr",)),
)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


# ------------------------------------------------------------------------------------ semantic map

@dataclass
class SemanticMap:
    """What `semantic_map` computed and drew."""
    texts: list[str]
    probs: torch.Tensor            # [T, h, w] per-patch p over the texts
    image: np.ndarray              # [S, S, 3] uint8, the image the model saw
    figure: object = None
    panel_axes: list = field(default_factory=list)   # image, one per text, argmax (colour bars excluded)

    @property
    def argmax(self) -> torch.Tensor:
        return self.probs.argmax(dim=0)


def load_image(spec: str):
    """A PIL RGB image from a file or `demo-shapes:SPLIT:INDEX`."""
    from PIL import Image

    if spec.startswith("demo-shapes:"):
        from .data.demo import DemoShapes

        parts = spec.split(":")
        if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
            raise ValueError(f"expected demo-shapes:SPLIT:INDEX, got {spec!r}")
        return DemoShapes(split=parts[1]).__getitem__(int(parts[2]))["image"]
    if not Path(spec).is_file():
        raise FileNotFoundError(f"image not found: {spec}")
    try:
        with Image.open(spec) as im:
            return im.convert("RGB")
    except Exception as exc:   # PIL raises many kinds (OSError, SyntaxError, ...) for bytes that are not an image
        raise ValueError(f"{spec} is not a readable image ({type(exc).__name__})") from None


def _model_view(model, image) -> tuple[torch.Tensor, np.ndarray]:
    """(normalised input [1, 3, S, S], the same pixels as uint8 [S, S, 3])."""
    import torch

    from .eval.models import eval_transform

    x = eval_transform(model.image_size, model.image_mean, model.image_std)(image).unsqueeze(0)
    mean = torch.tensor(model.image_mean).view(3, 1, 1)
    std = torch.tensor(model.image_std).view(3, 1, 1)
    shown = ((x[0] * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return x, shown


def semantic_map(model, image, texts: list[str], *, tau: float | None = None, tokenizer=None, out=None,
                 alpha: float = 0.55, interpolation: str = "nearest", panel_size: float = 3.0,
                 dpi: int = 100, device="cpu", precision: str = "auto") -> SemanticMap:
    """Compute the per-patch distributions over `texts` for `image` (PIL) and draw them.

    Returns a SemanticMap (probabilities, the figure and its panels); writes a PNG when `out`.
    `tau` defaults to the τ1 the model was trained with (`rils.eval.models.default_tau`).
    """
    from .eval.models import default_tau
    from .eval.patchseg import text_prototypes
    from .model.text import get_tokenizer

    texts = [str(t) for t in texts]
    tau = default_tau(model) if tau is None else tau
    if len(texts) < 2:
        raise ValueError("give at least two texts: p is a distribution over them")
    tokenizer = tokenizer or get_tokenizer(model.context_length)
    model = model.to(device).eval()
    protos = text_prototypes(model, tokenizer, texts, device=device, precision=precision)  # one text, one prototype
    probs, shown = _patch_probabilities(model, image, protos, tau, device, precision)
    result = SemanticMap(texts, probs, shown)
    _draw_semantic_map(result, alpha=alpha, interpolation=interpolation, panel_size=panel_size, tau=tau)
    _save(result.figure, out, dpi)
    return result


def _patch_probabilities(model, image, protos, tau: float, device, precision: str):
    """([C, h, w] p over the prototypes for the image, the image as the model sees it, uint8)."""
    import torch

    from .eval.patchseg import patch_probabilities
    from .precision import autocast

    x, shown = _model_view(model, image)
    with torch.inference_mode(), autocast(device, precision):
        probs = patch_probabilities(model, x.to(device), protos, tau)[0].float().cpu()
    return probs, shown


def _save(fig, out, dpi: int) -> None:
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi)


def _draw_semantic_map(r: SemanticMap, *, alpha: float, interpolation: str, panel_size: float, tau: float):
    plt = _pyplot()
    from matplotlib.patches import Patch

    T = len(r.texts)
    n = T + 2
    rows = math.ceil(n / 4)
    cols = math.ceil(n / rows)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_size * 1.3, rows * panel_size * 1.2 + 0.4),
                             squeeze=False, layout="constrained")
    S = r.image.shape[0]
    extent = (0, S, S, 0)
    panels = list(axes.ravel()[:n])
    for ax in axes.ravel()[n:]:
        ax.remove()

    panels[0].imshow(r.image, extent=extent)
    h, w = r.probs.shape[-2:]
    panels[0].set_title(f"input ({S}x{S}, {h}x{w} patches)", fontsize=9)
    for t, ax in enumerate(panels[1:T + 1]):
        ax.imshow(r.image, extent=extent)
        im = ax.imshow(r.probs[t].numpy(), cmap="inferno", vmin=0, vmax=1, alpha=alpha, extent=extent,
                       interpolation=interpolation)
        ax.set_title(_wrap(r.texts[t]), fontsize=9)
    fig.colorbar(im, ax=panels, shrink=0.6, label="p (softmax over the texts)")
    colors = text_colors(r.texts)
    ax = panels[-1]
    ax.imshow(r.image, extent=extent)
    ax.imshow(colors[r.argmax.numpy()], alpha=alpha, extent=extent, interpolation="nearest")
    ax.set_title(f"argmax over the texts (τ1={tau:g})", fontsize=9)
    ax.legend(handles=[Patch(color=colors[i], label=_wrap(r.texts[i], 28)) for i in range(T)],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8, frameon=False)
    for ax in panels:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("per-patch p over the texts in the language space (Eq. 8)", fontsize=10)
    r.figure, r.panel_axes = fig, panels


# A text that names a colour is drawn in it (its first colour word), unless that colour is too light to
# see on a white image ("white background" would look like the image itself). Every other text takes
# the next colour of a qualitative palette (matplotlib's tab10 without its grey, then darker tab20b
# shades, then spread-out hues) that is not close to a colour already given, so each text is distinct
# and saturated, and none shows as the colour another text names.
NAMED_COLORS = {"red": "#d62728", "green": "#2ca02c", "blue": "#1f5fd6", "yellow": "#f2d21b", "purple": "#8e44ad",
                "orange": "#ff7f0e", "pink": "#e377c2", "brown": "#8c564b", "black": "#111111", "white": "#f4f4f4",
                "gray": "#8c8c8c", "grey": "#8c8c8c", "cyan": "#17becf"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
_CLOSE = 0.25   # RGB distance (channels in [0, 1]) under which two colours read as one on the map


def too_light(rgb) -> bool:
    """Pale in every channel: drawn over a white image it looks like the image."""
    return min(rgb) >= 0.75


def text_colors(texts: list[str]) -> np.ndarray:
    """[T, 3] RGB in [0, 1]: the colour a text names (unless too light), else the next palette colour
    not close to one already given (see above)."""
    import colorsys

    import numpy as np
    from matplotlib.colors import to_rgb

    words = [next((w for w in re.findall(r"[a-z]+", str(t).lower()) if w in NAMED_COLORS), None) for t in texts]
    colors = [to_rgb(NAMED_COLORS[w]) if w else None for w in words]
    colors = [None if c is None or too_light(c) else c for c in colors]
    taken = [c for c in colors if c is not None]
    # More texts than the palette: hues spaced by the golden ratio, saturated and mid-dark.
    spare = [to_rgb(c) for c in PALETTE] + [colorsys.hsv_to_rgb((0.11 + 0.618034 * i) % 1.0, 0.8, 0.7)
                                             for i in range(64)]
    for t, c in enumerate(colors):
        if c is None:
            far = [x for x in spare if all(math.dist(x, y) >= _CLOSE for y in taken)]
            c = (far or spare or [to_rgb(PALETTE[t % len(PALETTE)])])[0]   # far from all, else any unused
            if c in spare:
                spare.remove(c)
            colors[t] = c
            taken.append(c)
    return np.array(colors)


def semantic_map_grid(model, images: list, classes: list[str], prompts: list[list[str]], *, out=None,
                      tau: float | None = None, device="cpu", precision: str = "auto", dpi: int = 100):
    """Several images, each beside its per-patch argmax over `classes` (each class: the mean of its
    `prompts`' embeddings, as zero-shot patch segmentation builds them). Returns the figure."""
    from matplotlib.patches import Patch

    from .eval.models import default_tau
    from .eval.patchseg import text_prototypes
    from .model.text import get_tokenizer

    plt = _pyplot()
    tau = default_tau(model) if tau is None else tau
    model = model.to(device).eval()
    protos = text_prototypes(model, get_tokenizer(model.context_length), prompts, device=device, precision=precision)
    colors = text_colors(classes)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.4), squeeze=False, layout="constrained")
    for j, image in enumerate(images):
        probs, shown = _patch_probabilities(model, image, protos, tau, device, precision)
        argmax = probs.argmax(0)
        S = shown.shape[0]
        axes[0, j].imshow(shown, extent=(0, S, S, 0))
        axes[1, j].imshow(shown, extent=(0, S, S, 0))
        axes[1, j].imshow(colors[argmax.numpy()], alpha=0.75, extent=(0, S, S, 0), interpolation="nearest")
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("held-out image", fontsize=9)
    axes[1, 0].set_ylabel("argmax of p per patch", fontsize=9)
    fig.legend(handles=[Patch(color=colors[i], label=c) for i, c in enumerate(classes)], loc="outside lower center",
               ncol=min(len(classes), 7), fontsize=8, frameon=False)
    fig.suptitle(f"language semantic map (Eq. 8, τ1={tau:g}): each patch labelled by its most likely class", fontsize=9)
    _save(fig, out, dpi)
    return fig


def _wrap(text: str, width: int = 32) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width)) or text


# ------------------------------------------------------------------------------------------ curves

def read_metrics(path) -> list[dict]:
    """The lines of metrics.jsonl (a run folder or the file), by step, one record per step."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    by_step = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]


def plot_curves(path, out=None, *, dpi: int = 100):
    """Plot the present metric groups against the step; returns the figure (PNG written when `out`)."""
    plt = _pyplot()
    records = read_metrics(path)
    if not records:
        raise ValueError(f"no metrics in {path}")

    def series(key):
        pts = [(r["step"], r[key]) for r in records
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
               and math.isfinite(r[key])]
        return ([s for s, _ in pts], [v for _, v in pts]) if pts else None

    groups = [(title, [(k, series(k)) for k in keys if series(k)]) for title, keys in CURVE_GROUPS]
    groups = [(t, s) for t, s in groups if s]
    if not groups:
        raise ValueError(f"{path} holds none of the plotted metrics "
                         f"({', '.join(k for _, keys in CURVE_GROUPS for k in keys)})")
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.4), squeeze=False)
    for ax, (title, lines) in zip(axes[0], groups):
        for i, (key, (steps, values)) in enumerate(lines):
            # i2t_acc and matched_frac coincide for RILS: dash the second so both stay visible
            ax.plot(steps, values, label=key, marker="." if len(steps) < 30 else None,
                    linestyle="--" if title == "accuracy" and i else "-")
        ax.set_title(title)
        ax.set_xlabel("step")
        if title == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(str(path), fontsize=9)
    fig.tight_layout()
    _save(fig, out, dpi)
    return fig


# --------------------------------------------------------------------------------------------- CLI

def add_viz_parser(subparsers, help: str) -> None:
    import argparse

    p = subparsers.add_parser("viz", help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="viz_command", metavar="WHAT", required=True)
    s = sub.add_parser("semantic-map", help="per-patch p over texts (Eq. 8), one panel per text + argmax")
    s.add_argument("--checkpoint", "-m", required=True, help="training checkpoint or open_clip export")
    s.add_argument("--image", "-i", required=True, help="image file or demo-shapes:SPLIT:INDEX")
    s.add_argument("--texts", "-t", nargs="+", required=True, help="two or more texts")
    s.add_argument("--out", "-o", required=True, help="PNG file")
    s.add_argument("--tau", type=float, default=None, help="τ1 of Eq. 8 (default: the checkpoint's)")
    s.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 where the hardware computes it natively, else fp32")
    s.add_argument("--alpha", type=float, default=0.55, help="opacity of the heatmaps over the image")
    s.add_argument("--interpolation", default="nearest", choices=("nearest", "bilinear"),
                   help="how the patch grid is drawn")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=_run_semantic_map)
    c = sub.add_parser("curves", help="losses, accuracies and lr from a run's metrics.jsonl")
    c.add_argument("run", help="run folder (or its metrics.jsonl)")
    c.add_argument("--out", "-o", required=True, help="PNG file")
    c.set_defaults(func=_run_curves)


def _run_semantic_map(args) -> int:
    import torch

    from .load import load_model

    try:
        model = load_model(args.checkpoint)
        r = semantic_map(model, load_image(args.image), args.texts, tau=args.tau, out=args.out,
                         alpha=args.alpha, interpolation=args.interpolation, device=args.device,
                         precision=args.precision)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"rils viz: error: {exc}", file=sys.stderr)
        return 2
    share = torch.bincount(r.argmax.flatten(), minlength=len(r.texts)).float() / r.argmax.numel()
    for text, s in zip(r.texts, share.tolist()):
        print(f"{100 * s:6.1f}% of patches  {text}")
    print(f"wrote {args.out}")
    return 0


def _run_curves(args) -> int:
    try:
        plot_curves(args.run, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rils viz: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0
