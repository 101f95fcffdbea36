"""End-to-end fine-tuning (paper Sec. 4.1, Table 1), following MAE's recipe with timm's utilities.

The vision trunk is rebuilt as a timm classifier, `timm.create_model(model.timm_model_name,
**model.timm_kwargs, num_classes=K, drop_path_rate=...)`, and `model.visual.trunk`'s weights are
loaded into it (only the new head may be missing). Global average pooling of the patch tokens
after the final norm, as in pre-training (our trunk's `global_pool='avg', fc_norm=False`; MAE
instead moves the norm after the pooling, which would leave the pre-trained norm unused).

Recipe (MAE ViT-B defaults, `main_finetune.py`): AdamW, lr = blr * batch / 256 with blr 5e-4,
weight decay 0.05 (none on norms, biases, position embedding and cls token), layer-wise lr decay
0.65 (`timm.optim.create_optimizer_v2(layer_decay=...)`), drop path 0.1, RandAugment
rand-m9-mstd0.5-inc1 and random erasing 0.25 (`timm.data.create_transform`), mixup 0.8 / cutmix
1.0 with label smoothing 0.1 (`timm.data.Mixup` + `SoftTargetCrossEntropy`), per-iteration warm-up
(5 epochs; the paper's 100-epoch runs) then cosine to 1e-6 (`timm.scheduler.CosineLRScheduler`).
Evaluation: resize to size / 0.875, centre crop, once after the last epoch (MAE prints the best
epoch on the validation set; choosing an epoch on the test split would flatter the number).
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..precision import autocast
from .datasets import EvalDataset, aligned_labels
from .features import model_device
from .protocol import own_loop_options
from .zeroshot import topk_accuracy


def build_classifier(model, num_classes: int, drop_path_rate: float = 0.1) -> nn.Module:
    """A timm ViT classifier holding `model.visual.trunk`'s weights and a fresh head."""
    import timm

    name, kwargs = getattr(model, "timm_model_name", None), getattr(model, "timm_kwargs", None)
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if not isinstance(name, str) or not isinstance(kwargs, dict) or trunk is None:
        raise ValueError("fine-tuning needs a model with `timm_model_name`, `timm_kwargs` and "
                         "`visual.trunk` (a rils checkpoint); this model has not")
    net = timm.create_model(name, pretrained=False,
                            **{**kwargs, "num_classes": num_classes, "drop_path_rate": drop_path_rate})
    missing, unexpected = net.load_state_dict(trunk.state_dict(), strict=False)
    head = {k for k, _ in net.named_parameters() if k.startswith("head.")}
    if unexpected or set(missing) - head:
        raise RuntimeError(f"trunk weights do not fit {name}: missing {sorted(set(missing) - head)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
    nn.init.trunc_normal_(net.head.weight, std=2e-5)  # MAE: a near-zero head keeps early steps sane
    nn.init.zeros_(net.head.bias)
    # The trunk may have frozen its fixed sin-cos positions; MAE fine-tunes them like any weight.
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def _posterize(img, bits_to_keep, **kwargs):
    """timm's posterize, with "keep 0 bits" meaning what it meant when MAE's recipe was tuned.

    RandAugment's PosterizeIncreasing maps magnitude 10 to 0 bits, and `mstd0.5` lands on 10 (draws
    above it are clamped) about 2% of the time. Pillow's posterize now refuses 0 bits (ValueError
    inside a DataLoader worker); earlier releases masked every bit off, a black image, as does
    TensorFlow's posterize that timm's op follows. We keep that black image.
    """
    from PIL import Image
    from timm.data import auto_augment

    if bits_to_keep < 1:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def _guard_posterize(transform) -> None:
    """Point every timm AugmentOp in `transform` (Compose, RandAugment, AutoAugment, AugMix) that
    posterizes at `_posterize`, in place."""
    from timm.data import auto_augment

    stack = [transform]
    while stack:
        t = stack.pop()
        if isinstance(t, auto_augment.AugmentOp):
            if t.aug_fn is auto_augment.posterize:
                t.aug_fn = _posterize
        elif isinstance(t, (list, tuple)):
            stack.extend(t)
        else:  # Compose.transforms, RandAugment/AugMix .ops, AutoAugment .policy (lists of ops)
            stack.extend(getattr(t, name) for name in ("transforms", "ops", "policy") if hasattr(t, name))


def finetune_transforms(image_size: int, mean, std, *, auto_augment: str | None,
                        reprob: float, crop_pct: float = 0.875):
    from timm.data import create_transform

    train = create_transform(image_size, is_training=True, color_jitter=None, auto_augment=auto_augment,
                             interpolation="bicubic", re_prob=reprob, re_mode="pixel", re_count=1,
                             mean=tuple(mean), std=tuple(std))
    _guard_posterize(train)
    test = create_transform(image_size, is_training=False, interpolation="bicubic", crop_pct=crop_pct,
                            mean=tuple(mean), std=tuple(std))
    return train, test


@torch.no_grad()
def _predict(net, loader, device, precision, progress) -> tuple[torch.Tensor, torch.Tensor]:
    net.eval()
    logits, labels = [], []
    for x, y in tqdm(loader, desc="fine-tune eval", disable=not progress, leave=False):
        with autocast(device, precision):
            logits.append(net(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def evaluate_finetune(model, train_dataset: EvalDataset, test_dataset: EvalDataset, *,
                      epochs: int = 100, warmup_epochs: float = 5, batch_size: int = 1024,
                      blr: float = 5e-4, min_lr: float = 1e-6, layer_decay: float = 0.65,
                      weight_decay: float = 0.05, drop_path: float = 0.1, mixup: float = 0.8,
                      cutmix: float = 1.0, smoothing: float = 0.1,
                      auto_augment: str | None = "rand-m9-mstd0.5-inc1", reprob: float = 0.25,
                      clip_grad: float | None = None, image_size: int | None = None, mean=None,
                      std=None, crop_pct: float = 0.875, device=None, precision: str = "auto",
                      num_workers: int = 0, seed: int = 0, progress: bool = True,
                      return_model: bool = False) -> dict:
    """Fine-tune the vision trunk on `train_dataset`; top-1/top-5 on `test_dataset` after the last epoch.

    `image_size`, `mean`, `std` default to the model's `image_size`, `image_mean`, `image_std`.
    """
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    device = torch.device(device) if device is not None else model_device(model)
    image_size = image_size or getattr(model, "image_size", None)
    mean = mean or getattr(model, "image_mean", None)
    std = std or getattr(model, "image_std", None)
    if image_size is None or mean is None or std is None:
        raise ValueError("give image_size, mean and std (the model has no image_size/image_mean/image_std)")
    classnames = train_dataset.classnames
    train_dataset.require_labels()
    test_y = aligned_labels(test_dataset, classnames)
    batch_size = min(batch_size, len(train_dataset)) // 2 * 2  # mixup pairs samples: even batches
    if batch_size < 2:
        raise ValueError("fine-tuning needs at least 2 training samples")

    torch.manual_seed(seed)
    np.random.seed(seed)  # timm's Mixup draws from numpy, RandAugment from random
    random.seed(seed)
    net = build_classifier(model, len(classnames), drop_path).to(device)
    train_tf, test_tf = finetune_transforms(image_size, mean, std, auto_augment=auto_augment,
                                            reprob=reprob, crop_pct=crop_pct)
    train_loader = torch.utils.data.DataLoader(
        train_dataset.with_transform(train_tf), batch_size=batch_size, shuffle=True, drop_last=True,
        num_workers=num_workers, generator=torch.Generator().manual_seed(seed))
    test_loader = torch.utils.data.DataLoader(test_dataset.with_transform(test_tf), batch_size=batch_size,
                                              num_workers=num_workers)
    steps = len(train_loader)
    lr = blr * batch_size / 256
    opt = create_optimizer_v2(net, "adamw", lr=lr, weight_decay=weight_decay, layer_decay=layer_decay)
    warmup = int(round(warmup_epochs * steps))
    sched = CosineLRScheduler(opt, t_initial=max(epochs * steps - warmup, 1), lr_min=min_lr,
                              warmup_t=warmup, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)
    mixup_fn = None
    if mixup > 0 or cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=smoothing,
                         num_classes=len(classnames))
        criterion = SoftTargetCrossEntropy()
    elif smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=smoothing)
    else:
        criterion = nn.CrossEntropyLoss()

    history = []
    for epoch in range(epochs):
        net.train()
        total = 0.0
        bar = tqdm(train_loader, desc=f"fine-tune {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for it, (x, y) in enumerate(bar):
            sched.step_update(epoch * steps + it)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if mixup_fn is not None:
                x, y = mixup_fn(x, y)
            with autocast(device, precision):
                loss = criterion(net(x), y)
            if not torch.isfinite(loss):
                raise RuntimeError(f"fine-tuning loss is {loss.item()} at epoch {epoch}, step {it}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad:
                nn.utils.clip_grad_norm_(net.parameters(), clip_grad)
            opt.step()
            total += loss.item()
        history.append({"epoch": epoch + 1, "train_loss": total / steps})

    logits, _ = _predict(net, test_loader, device, precision, progress)
    y = torch.as_tensor(test_y, dtype=torch.long)
    metrics = {"top1": topk_accuracy(logits, y, 1),
               "top5": topk_accuracy(logits, y, 5) if logits.shape[1] >= 5 else None}
    out = {"metrics": metrics, "history": history, "num_train": len(train_dataset),
           "num_test": len(test_dataset), "num_classes": len(classnames),
           "timm_model_name": model.timm_model_name, "batch_size": batch_size, "lr": lr}
    if return_model:
        out["model"] = net
    return out


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    return evaluate_finetune(loaded.model, train, test, device=device, precision=precision, **options,
                             **own_loop_options(extract))
