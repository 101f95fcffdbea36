"""`rils eval segment`: semantic segmentation by fine-tuning the pre-trained trunk (paper Table 3),
the MAE/BEiT UperNet recipe of MMSeg (configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py).

Data and pipelines: seg_data.py (ADE20K layout, MMSeg's ADE20K pipelines); model: seg_heads.py
(timm ViT at --size, Feature2Pyramid, UperNet + auxiliary FCN); loop: loop.py.

Recipe (MMSeg MAE config; every value an option): AdamW lr 1e-4, betas (0.9, 0.999), weight decay
0.05 (none on norms, biases, positions, cls token), layer-wise lr decay 0.65 (heads 1), drop path
0.1, linear warm-up from 1e-6 over 1500 iterations then poly (power 1) to 0, 160k iterations of a
global batch of 16 at 512×512. Loss: cross-entropy on logits resized to the label (bilinear),
ignore 255, averaged over all pixels (MMSeg's avg_non_ignore=False), plus 0.4 × the auxiliary
head's. Evaluation after the last step, MMSeg's `slide_inference` (crop --size, stride
round(2/3 · size): BEiT's 341 at 512) on the image rescaled to (4·size, size), logits resized to
the label's size, and MMSeg's IoUMetric over the whole split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ...distributed import all_reduce_sum, rank, world_size
from ...precision import autocast, resolve_precision
from ..features import model_device
from ..protocol import SEGMENT_STEPS as DEFAULT_STEPS, own_loop_options
from .loop import build_optimizer, finetune, init_distributed, is_main, warmup_poly
from .seg_data import IGNORE_INDEX, Transformed, eval_pipeline, train_pipeline
from .seg_heads import build_segmenter


# ------------------------------------------------------------------------------------------- loss

def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MMSeg's CrossEntropyLoss: logits resized to the label, ignore 255, mean over all pixels."""
    logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none").mean()


def make_loss_fn(aux_weight: float):
    def loss_fn(model, batch, device):
        images, target = (t.to(device, non_blocking=True) for t in batch)
        logits, aux = model(images)
        decode = seg_loss(logits, target)
        logs = {"loss_decode": decode.detach()}
        if aux is None:
            return decode, logs
        aux = aux_weight * seg_loss(aux, target)
        return decode + aux, {**logs, "loss_aux": aux.detach()}
    return loss_fn


# -------------------------------------------------------------------------------------- inference

@torch.no_grad()
def slide_inference(model: nn.Module, image: torch.Tensor, num_classes: int, crop: int, stride: int,
                    batch_size: int = 8) -> torch.Tensor:
    """MMSeg's `slide_inference` for one normalised image [3, H, W] -> logits [K, H, W]: windows of
    crop×crop every `stride` (the last flush with the border), logits resized to each window,
    summed and divided by the windows covering each pixel. A window cut short by a small image is
    padded to the crop (the trunk's input size) and its logits cut back."""
    _, h, w = image.shape
    rows = max(h - crop + stride - 1, 0) // stride + 1
    cols = max(w - crop + stride - 1, 0) // stride + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, h), min(c * stride + crop, w)
            boxes.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    total = torch.zeros(num_classes, h, w, device=image.device)
    count = torch.zeros(1, h, w, device=image.device)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        windows = torch.stack([F.pad(image[:, y1:y2, x1:x2], (0, crop - (x2 - x1), 0, crop - (y2 - y1)))
                               for y1, y2, x1, x2 in chunk])
        logits, _ = model(windows)
        logits = F.interpolate(logits.float(), size=(crop, crop), mode="bilinear", align_corners=False)
        for (y1, y2, x1, x2), lg in zip(chunk, logits):
            total[:, y1:y2, x1:x2] += lg[:, :y2 - y1, :x2 - x1]
            count[:, y1:y2, x1:x2] += 1
    return total / count


# ---------------------------------------------------------------------------------------- metrics

def area_counts(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """MMSeg's `intersect_and_union`: [4, K] areas (intersect, union, prediction, label) per class
    over the pixels whose label is not 255."""
    keep = label != IGNORE_INDEX
    pred, label = pred[keep], label[keep]
    inter = torch.bincount(label[pred == label], minlength=num_classes)
    area_pred = torch.bincount(pred, minlength=num_classes)
    area_label = torch.bincount(label, minlength=num_classes)
    return torch.stack([inter, area_pred + area_label - inter, area_pred, area_label])


def iou_metrics(areas, classnames: list[str]) -> tuple[dict, list[dict]]:
    """MMSeg's IoUMetric from the split's summed areas, as fractions: aAcc = all intersect / all
    labelled; IoU = intersect / union, Acc = intersect / label area, NaN (None) where 0/0; mIoU and
    mAcc are their nan-means."""
    inter, union, _, label = np.asarray(areas, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / label

    def mean(v):
        return float(np.nanmean(v)) if np.isfinite(v).any() else None
    metrics = {"mIoU": mean(iou), "aAcc": float(inter.sum() / label.sum()) if label.sum() else None,
               "mAcc": mean(acc)}
    per_class = [{"name": n, "IoU": None if np.isnan(i) else float(i), "Acc": None if np.isnan(a) else float(a)}
                 for n, i, a in zip(classnames, iou, acc)]
    return metrics, per_class


class _EvalItems(torch.utils.data.Dataset):
    """(normalised rescaled image, label [H, W], index) of the validation images."""

    def __init__(self, dataset, indices, transform):
        self.dataset, self.indices, self.transform = dataset, list(indices), transform

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        i = self.indices[j]
        image, label = self.dataset[i]
        return self.transform(image).as_subclass(torch.Tensor), label.as_subclass(torch.Tensor), i


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, image_size: int, mean, std, stride: int, device,
             precision: str, save_predictions=None, num_workers: int = 0, batch_size: int = 8,
             progress: bool = True) -> tuple[dict, list[dict]]:
    """Slide inference on every image of `dataset` (this rank's share under DDP), MMSeg's IoUMetric
    over all of them; `save_predictions` (a folder) gets one PNG per image in the dataset's label
    convention (class k -> label k + 1)."""
    model.eval()
    K = dataset.num_classes
    out_dir = Path(save_predictions) if save_predictions else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if K > 65534:
            raise ValueError(f"{K} classes do not fit a 16-bit prediction PNG")
    items = _EvalItems(dataset, range(rank(), len(dataset), world_size()), eval_pipeline(image_size, mean, std))
    loader = torch.utils.data.DataLoader(items, batch_size=None, num_workers=num_workers)
    areas = torch.zeros(4, K, dtype=torch.int64, device=device)
    for image, label, i in tqdm(loader, desc="segment eval", disable=not progress, leave=False):
        with autocast(device, precision):
            logits = slide_inference(model, image.to(device), K, image_size, stride, batch_size)
        logits = F.interpolate(logits[None], size=label.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits[0].argmax(0)
        areas += area_counts(pred, label.to(device), K)
        if out_dir is not None:
            png = (pred + 1).cpu().numpy().astype(np.uint8 if K < 256 else np.uint16)
            Image.fromarray(png).save(out_dir / f"{dataset.images[i].stem}.png")
    return iou_metrics(all_reduce_sum(areas).cpu().numpy(), dataset.classnames)


# --------------------------------------------------------------------------------------- protocol

def resolve_steps(steps: int | None, epochs: float | None, num_images: int, batch_size: int) -> int:
    """--steps, or --epochs passes over the training images at the global batch (default 160k)."""
    if steps is not None and epochs is not None:
        raise ValueError("give --steps or --epochs, not both")
    if epochs is not None:
        return max(1, int(round(epochs * num_images / batch_size)))
    steps = DEFAULT_STEPS if steps is None else steps
    if steps < 1:
        raise ValueError(f"--steps must be positive, not {steps}")
    return steps


def evaluate_segment(model, train_dataset, test_dataset, *, steps: int | None = None,
                     epochs: float | None = None, batch_size: int = 16, image_size: int = 512,
                     lr: float = 1e-4, weight_decay: float = 0.05, layer_decay: float = 0.65,
                     drop_path: float = 0.1, warmup_steps: int = 1500, head_channels: int = 768,
                     aux_weight: float = 0.4, stride: int | None = None, work_dir=None,
                     resume: bool = False, checkpoint_every: int = 2000, save_predictions=None,
                     seed: int = 0, device=None, precision: str = "auto", num_workers: int = 0,
                     progress: bool = True, return_model: bool = False) -> dict:
    """Fine-tune `model`'s trunk with a UperNet head on `train_dataset`, then mIoU on `test_dataset`
    (SegmentationFolder splits). `batch_size` is the global batch, split over the DDP ranks."""
    if test_dataset.classnames != train_dataset.classnames:
        raise ValueError("the train and test splits name different classes")
    if batch_size % world_size() or (world_size() == 1 and batch_size < 2):
        raise ValueError(f"--batch {batch_size} must be at least 2 (BatchNorm in the heads) and a "
                         f"multiple of the {world_size()} processes")
    if resume and work_dir is None:
        raise ValueError("--resume needs the --work-dir of the run to continue")
    stride = stride or int(round(image_size * 2 / 3))
    if not 0 < stride <= image_size:
        raise ValueError(f"--stride {stride} must be in 1..{image_size} (the window)")
    steps = resolve_steps(steps, epochs, len(train_dataset), batch_size)
    device = init_distributed(device if device is not None else model_device(model))
    precision = resolve_precision(precision, device)[0]
    mean, std = model.image_mean, model.image_std

    torch.manual_seed(seed)   # the heads' init; augmentation draws are the loop's (seeded) workers'
    net = build_segmenter(model, train_dataset.num_classes, image_size=image_size, drop_path=drop_path,
                          channels=head_channels, aux=aux_weight > 0)
    # MMSeg's SyncBN: statistics over the global batch (PyTorch's SyncBatchNorm runs on CUDA only;
    # ranks on CPUs keep their own statistics)
    if world_size() > 1 and device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net = net.to(device)
    optimizer = build_optimizer(net, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay)
    settings = dict(steps=steps, batch_size=batch_size, image_size=image_size, lr=lr, weight_decay=weight_decay,
                    layer_decay=layer_decay, drop_path=drop_path, warmup_steps=warmup_steps,
                    head_channels=head_channels, aux_weight=aux_weight, seed=seed,
                    num_classes=train_dataset.num_classes, train_images=len(train_dataset))
    run = finetune(net, Transformed(train_dataset, train_pipeline(image_size, mean, std)),
                   loss_fn=make_loss_fn(aux_weight), optimizer=optimizer,
                   lr_factor=warmup_poly(warmup_steps, steps), steps=steps,
                   batch_size=batch_size // world_size(), work_dir=work_dir, seed=seed,
                   checkpoint_every=checkpoint_every, resume=resume, device=device, precision=precision,
                   num_workers=num_workers, progress=progress, desc="segment", settings=settings)
    metrics, per_class = evaluate(net, test_dataset, image_size=image_size, mean=mean, std=std, stride=stride,
                                  device=device, precision=precision, save_predictions=save_predictions,
                                  num_workers=num_workers, batch_size=max(1, batch_size // world_size()),
                                  progress=progress and is_main())
    out = {"metrics": metrics, "per_class": per_class, "train_images": len(train_dataset),
           "test_images": len(test_dataset), "num_classes": train_dataset.num_classes, **run,
           "image_size": image_size, "stride": stride, "block_indices": net.indices,
           "predictions": str(save_predictions) if save_predictions else None}
    if return_model:
        out["model"] = net
    return out


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    return evaluate_segment(loaded.model, train, test, device=device, precision=precision, **options,
                            **own_loop_options(extract))
