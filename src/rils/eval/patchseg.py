"""Zero-shot dense prediction from RILS's per-patch distributions over texts (Eq. 7-8).

For an intact image, each patch token f^k after the final norm is projected by θ and normalised
(f̃^k, Eq. 7) and compared with the normalised text embeddings z^T of a set of texts:

    p^k = softmax_l( <f̃^k, z^T_l> / τ1 )                                                  (Eq. 8)

τ1 is by default the one the model was trained with (its checkpoint's `loss.tau_target`, the
paper's 0.04 unless changed; `rils.eval.models.default_tau`).

`rils viz semantic-map` draws p for free texts; the `patchseg` protocol labels every patch with
the argmax over class prototypes and scores the result against ground-truth masks.

Choices of the `patchseg` protocol (documented here, recorded in its result):

- classes: "background" + the demo corpus's shapes (`seg` = 0 background, 1 + SHAPES index). With
  the dataset option task="color" (`--task color`) the same regions are labelled by colour
  instead (background + COLORS; the demo checkpoint learns colour words long before shape words);
- prompts: each class is the mean of the normalised embeddings of `SEG_TEMPLATES` (task "color":
  `COLOR_SEG_TEMPLATES`) filled with the class name, renormalised (as zero-shot classification
  does); the background class is built the same way from `BACKGROUND_PROMPTS`. Both are options;
- upsampling: the patch probabilities [C, h, w] are resized to the mask's resolution
  ("bilinear" on probabilities, align_corners=False; or "nearest"), then each pixel takes the
  argmax. The image goes through the model's eval transform (resize the short side, centre crop);
  images must be square so that the crop is the whole image and the map covers every pixel;
- scoring: every pixel counts (no ignore label); one confusion matrix over the whole split; IoU_c
  = TP / (TP + FP + FN); mIoU = the mean over classes present in the ground truth or predicted
  (a class absent from both has no IoU and is left out, as mmseg's nanmean); pixel accuracy =
  correct pixels / all pixels; mean accuracy = mean over ground-truth classes of their recall.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..precision import autocast, full_precision
from .features import eval_mode, model_device
from .models import default_tau, patch_tokens_projected
from .prompts import fill, get_templates
from .protocol import UPSAMPLE

SEG_TEMPLATES = ["a {c}.", "a {c} shape.", "a photo of a {c}.", "a drawing of a {c}."]
COLOR_SEG_TEMPLATES = ["a {c} shape.", "something {c}.", "a {c} object.", "a shape in {c}."]
BACKGROUND_PROMPTS = ["background.", "a light background.", "an empty light background.",
                      "a plain light surface."]


# ----------------------------------------------------------------------------- patch distributions

def patch_embeddings(model, images: torch.Tensor) -> torch.Tensor:
    """[B, h, w, D]: f̃^k = normalise(θ(f^k)) for every patch of the intact images (Eq. 7)."""
    tokens = patch_tokens_projected(model, images)
    B, N, _ = tokens.shape
    H, W = images.shape[-2:]
    gh = int(round((N * H / W) ** 0.5))
    gw = N // max(gh, 1)
    if gh * gw != N:
        raise ValueError(f"{N} patch tokens do not form a grid for a {H}x{W} image")
    return F.normalize(tokens.float(), dim=-1).reshape(B, gh, gw, -1)


def class_prompts(classnames: list[str], templates: list[str], background: list[str]) -> list[list[str]]:
    """The prompts of each class: the background's own, then each template filled with the class name."""
    return [list(background)] + [[fill(t, c) for t in templates] for c in classnames[1:]]


def text_prototypes(model, tokenizer, prompts: list[list[str]] | list[str], *, device=None,
                    precision: str = "auto") -> torch.Tensor:
    """[C, D] unit-norm prototypes. An entry that is a list of prompts is the mean of their
    normalised embeddings, renormalised; a plain string is its own normalised embedding."""
    device = torch.device(device) if device is not None else model_device(model)
    groups = [[p] if isinstance(p, str) else list(p) for p in prompts]
    out = []
    with eval_mode(model), torch.inference_mode(), autocast(device, precision):
        for group in groups:
            emb = F.normalize(model.encode_text(tokenizer(group).to(device)).float(), dim=-1).mean(dim=0)
            out.append(emb / emb.norm())
    return torch.stack(out)


def patch_probabilities(model, images: torch.Tensor, prototypes: torch.Tensor,
                        tau: float | None = None) -> torch.Tensor:
    """[B, C, h, w]: p^k of Eq. 8 over the C prototypes (softmax of cosine / τ1), per patch.
    `tau` defaults to the model's τ1 (`models.default_tau`)."""
    tau = default_tau(model) if tau is None else tau
    f = patch_embeddings(model, images)                        # [B, h, w, D]
    with full_precision():   # like the loss head: bf16 would round cosine / 0.04 by up to ~0.1
        z = F.normalize(prototypes.to(f.device).float(), dim=-1)
        logits = torch.einsum("bhwd,cd->bchw", f.float(), z) / tau
        return logits.softmax(dim=1)


def upsample(probs: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    if mode not in UPSAMPLE:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE)}, not {mode!r}")
    if mode == "nearest":
        return F.interpolate(probs, size=size, mode="nearest")
    return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------- metrics

def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """[C, C] int64: rows = ground truth, columns = prediction."""
    pred = np.asarray(pred, dtype=np.int64).ravel()
    target = np.asarray(target, dtype=np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target differ in size: {pred.shape} vs {target.shape}")
    if target.size and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"target labels outside [0, {num_classes})")
    return np.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def segmentation_metrics(conf: np.ndarray, classnames: list[str] | None = None) -> dict:
    """mIoU, pixel accuracy, mean accuracy and per-class IoU from a confusion matrix."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    gt, pr = conf.sum(axis=1), conf.sum(axis=0)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    names = classnames or [str(i) for i in range(len(conf))]
    total = conf.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
        "mean_acc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
    }


# ----------------------------------------------------------------------------------------- dataset

class _SegPairs(torch.utils.data.Dataset):
    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, seg = image_and_mask(self.dataset, i)
        if image.size[0] != image.size[1]:
            raise ValueError(f"patchseg needs square images (got {image.size[0]}x{image.size[1]})")
        if seg.shape != (image.size[1], image.size[0]):
            raise ValueError(f"mask {seg.shape} and image {image.size} differ in size")
        return self.transform(image), torch.from_numpy(np.asarray(seg, dtype=np.int64))


def _color_task(dataset) -> bool:
    return getattr(dataset, "task", None) == "color"


def image_and_mask(dataset, i: int):
    """(PIL image, [H, W] integer mask) of sample i, from the dataset's `image_and_mask`. demo-shapes:
    0 = background, then 1 + SHAPES index, or for task "color" the same regions by 1 + COLORS index."""
    if callable(getattr(dataset, "image_and_mask", None)):
        return dataset.image_and_mask(i)
    raise ValueError(f"dataset {getattr(dataset, 'name', dataset)!r} has no segmentation masks; "
                     f"patchseg supports demo-shapes")


def seg_classnames(dataset) -> list[str]:
    """Mask label k -> class name: background, then the shapes (or, task "color", the colours)."""
    names = getattr(dataset, "seg_classnames", None)
    if names:
        return list(names)
    raise ValueError("patchseg supports demo-shapes (its masks label background and the shapes)")


# -------------------------------------------------------------------------------------- evaluation

def evaluate_patchseg(model, tokenizer, transform, dataset, *, tau: float | None = None,
                      upsample_mode: str = "bilinear", templates=None, background_prompts=None, device=None,
                      precision: str = "auto", batch_size: int = 64, num_workers: int = 0,
                      progress: bool = True, **_ignored) -> dict:
    """Zero-shot segmentation of `dataset` (needs masks) by the argmax of the per-patch p over
    class prototypes; returns metrics (miou, pixel_acc, mean_acc) and the settings used.
    `tau` (τ1) defaults to the model's (`models.default_tau`)."""
    if upsample_mode not in UPSAMPLE:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE)}, not {upsample_mode!r}")
    tau = default_tau(model) if tau is None else tau
    device = torch.device(device) if device is not None else model_device(model)
    classnames = seg_classnames(dataset)
    if templates is None:
        templates = COLOR_SEG_TEMPLATES if _color_task(dataset) else SEG_TEMPLATES
    templates = get_templates(templates, "patchseg")
    background = list(background_prompts) if background_prompts else list(BACKGROUND_PROMPTS)
    prompts = class_prompts(classnames, templates, background)
    protos = text_prototypes(model, tokenizer, prompts, device=device, precision=precision)

    C = len(classnames)
    conf = np.zeros((C, C), dtype=np.int64)
    loader = torch.utils.data.DataLoader(_SegPairs(dataset, transform), batch_size=batch_size,
                                         shuffle=False, num_workers=num_workers)
    bar = tqdm(loader, desc=f"patchseg {getattr(dataset, 'name', '')}", unit="batch",
               disable=not progress, leave=False)
    grid = None
    with eval_mode(model), torch.inference_mode(), autocast(device, precision):
        for images, masks in bar:
            probs = patch_probabilities(model, images.to(device), protos, tau).float()
            grid = tuple(probs.shape[-2:])
            pred = upsample(probs, tuple(masks.shape[-2:]), upsample_mode).argmax(dim=1).cpu()
            conf += confusion_matrix(pred.numpy(), masks.numpy(), C)
    metrics = segmentation_metrics(conf, classnames)
    per_class = metrics.pop("per_class_iou")
    return {"metrics": metrics, "per_class_iou": per_class, "num_samples": len(dataset),
            "num_classes": C, "classnames": classnames, "patch_grid": list(grid) if grid else None,
            "prompts": {"background": background, "templates": list(templates)},
            "tau": tau, "upsample": upsample_mode, "ignore_index": None,
            "confusion_matrix": conf.tolist()}


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    # No feature cache: it needs every patch, not one vector per image.
    ex = {k: extract[k] for k in ("batch_size", "num_workers", "progress") if k in extract}
    return evaluate_patchseg(loaded.model, loaded.tokenizer, loaded.transform, test, device=device,
                             precision=precision, **options, **ex)


def _resolve_options(model, options: dict) -> dict:
    if options.get("tau") is None:
        options = {**options, "tau": default_tau(model)}
    return options
