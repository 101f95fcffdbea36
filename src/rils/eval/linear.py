"""Linear probing on frozen, cached features (paper Sec. 4.1, Table 1), following MAE's recipe.

Feature: the mean of the patch tokens after the final norm, cls excluded (`forward_features(x)
[:, 1:].mean(1)`): RILS's global image feature before θ, and MAE's global-pool feature. Models
without `forward_features` (open_clip's) fall back to `encode_image`; the result says which.

Head (MAE `main_linprobe.py`): BatchNorm1d(affine=False, eps=1e-6) - a parameter-free whitening
that makes one learning rate fit features of any scale - then Linear (weight ~ N(0, 0.01), bias
0); lr = blr * batch / 256, 90 epochs, warm-up then half-cycle cosine, all per iteration.

Convergence, not MAE's batch: MAE trains at batch 16384 with LARS (trust coefficient 0.001, so each
step moves the weight by ~lr/1000 of its norm), which converges only because ImageNet gives it
~7,000 steps. On a small split the same recipe takes a handful of steps and leaves the head at its
random init (a 4-class folder scored 0 % where SGD reached 100 %). So the defaults are: batch
1024 (capped at the split), optimiser "sgd" (momentum 0.9, no weight decay), at least 90 epochs
*and* at least `min_steps` (1000) optimiser steps (epochs are raised to reach them), warm-up at
most half the run, and the lr swept over `DEFAULT_BLRS`. "lars" (MAE's, for ImageNet-scale
splits) and "adamw" stay available. A split far smaller than the probe batch is warned about.
`tests/eval/test_linear_probe_converges.py` checks the probe against scikit-learn's optimum.

Learning-rate sweep (the paper sweeps it): with several `blrs`, each is trained on the train split
minus a held-out `val_fraction`, the best on that held-out part is retrained on the whole train
split, and only that one is scored on the test split, so the test split never picks the lr.
"""
from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .datasets import EvalDataset, aligned_labels
from .features import image_features
from .models import fingerprint_model
from .protocol import DEFAULT_BATCH, DEFAULT_BLR, DEFAULT_BLRS, DEFAULT_MIN_STEPS
from .report import float32_value
from .zeroshot import topk_accuracy


def linear_head(dim: int, num_classes: int) -> nn.Sequential:
    head = nn.Linear(dim, num_classes)
    nn.init.trunc_normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), head)


def _optimizer(probe: nn.Sequential, name: str, lr: float, weight_decay: float):
    head = probe[1]
    if name == "lars":
        from timm.optim import Lars
        # MAE's LARS adapts (and decays) only matrices; the bias takes plain momentum SGD.
        return Lars([{"params": [head.weight], "always_adapt": True},
                     {"params": [head.bias], "always_adapt": False, "weight_decay": 0.0}],
                    lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    raise AssertionError(name)  # validated by the caller


def _lr_at(epoch: float, lr: float, epochs: int, warmup: float) -> float:
    """MAE's schedule: linear warm-up, then half-cycle cosine to 0, evaluated per iteration."""
    if epoch < warmup:
        return lr * epoch / warmup
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / max(epochs - warmup, 1e-8)))


def train_linear_probe(x: torch.Tensor, y, num_classes: int, *, epochs: int = 90,
                       batch_size: int = DEFAULT_BATCH, blr: float | None = None, optimizer: str = "sgd",
                       weight_decay: float = 0.0, warmup_epochs: float = 10, seed: int = 0,
                       min_steps: int = DEFAULT_MIN_STEPS, device="cpu", progress: bool = False) -> nn.Sequential:
    """Train BatchNorm + Linear on features `x` [N, D] with labels `y`; returns the probe in eval mode.

    Runs max(`epochs`, enough epochs for `min_steps` optimiser steps); warm-up is capped at half of that.
    """
    device = torch.device(device)
    x = x.float().to(device)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    batch_size, steps, epochs, warmup = probe_schedule(len(x), epochs=epochs, batch_size=batch_size,
                                                       min_steps=min_steps, warmup_epochs=warmup_epochs)
    if optimizer not in DEFAULT_BLR:
        raise ValueError(f"optimizer must be one of {', '.join(DEFAULT_BLR)}, not {optimizer!r}")
    blr = DEFAULT_BLR[optimizer] if blr is None else blr
    lr = blr * batch_size / 256
    torch.manual_seed(seed)
    probe = linear_head(x.shape[1], num_classes).to(device)
    opt = _optimizer(probe, optimizer, lr, weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    probe.train()
    for epoch in tqdm(range(epochs), desc="linear probe", disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=gen).to(device)
        for it in range(steps):
            for group in opt.param_groups:
                group["lr"] = _lr_at(epoch + it / steps, lr, epochs, warmup)
            idx = order[it * batch_size:(it + 1) * batch_size]
            loss = loss_fn(probe(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return probe.eval()


@torch.no_grad()
def probe_metrics(probe: nn.Module, x: torch.Tensor, y) -> dict:
    device = next(probe.parameters()).device
    logits = probe(x.float().to(device)).cpu()
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    return {"top1": topk_accuracy(logits, y, 1),
            "top5": topk_accuracy(logits, y, 5) if logits.shape[1] >= 5 else None,
            "loss": float32_value(nn.functional.cross_entropy(logits, y))}


def probe_schedule(n: int, *, epochs: int = 90, batch_size: int = DEFAULT_BATCH,
                   min_steps: int = DEFAULT_MIN_STEPS, warmup_epochs: float = 10) -> tuple[int, int, int, float]:
    """(batch size, steps per epoch, epochs, warm-up epochs) a probe on `n` samples runs: the batch capped
    at the split, the last partial batch dropped (as MAE's loader does), `epochs` raised to reach
    `min_steps` optimiser steps, the warm-up capped at half the run."""
    batch_size = min(batch_size, n)
    if batch_size < 2:
        raise ValueError("linear probing needs at least 2 training samples (BatchNorm)")
    steps = n // batch_size
    epochs = max(epochs, math.ceil(min_steps / steps))
    return batch_size, steps, epochs, min(warmup_epochs, epochs / 2)


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, *, blrs=None,
                 val_fraction: float = 0.1, seed: int = 0, **train) -> dict:
    """Probe on given features; with several `blrs` (default: `DEFAULT_BLRS` of the optimiser), pick
    one on a held-out part of train (see top). The result holds the final probe's `schedule` (what
    `probe_schedule` made of the options) and, after a sweep, `lr_at_sweep_edge`: whether the chosen
    blr is the sweep's smallest or largest (then the best may lie beyond it; a line on stderr says so)."""
    optimizer = train.get("optimizer", "sgd")
    blrs = list(blrs) if blrs else list(DEFAULT_BLRS.get(optimizer, (0.1,)))
    batch = train.get("batch_size", DEFAULT_BATCH)
    if len(train_x) * 4 < batch:
        warnings.warn(f"linear probe: {len(train_x)} training samples is far fewer than the probe batch "
                      f"{batch}; the batch is capped at the split, and at least "
                      f"{train.get('min_steps', DEFAULT_MIN_STEPS)} optimiser steps are run", stacklevel=2)
    sweep = []
    if len(blrs) > 1:
        n_val = max(1, int(round(val_fraction * len(train_x))))
        perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
        val, fit = perm[:n_val], perm[n_val:]
        train_y_t = torch.as_tensor(np.asarray(train_y))
        for blr in blrs:
            p = train_linear_probe(train_x[fit], train_y_t[fit], num_classes, blr=blr, seed=seed, **train)
            m = probe_metrics(p, train_x[val], train_y_t[val])
            sweep.append({"blr": blr, "val_top1": m["top1"], "val_loss": m["loss"]})
        # A small held-out part ties often on top-1; its cross-entropy breaks the tie.
        best = max(sweep, key=lambda r: (r["val_top1"], -r["val_loss"]))["blr"]
    else:
        best = blrs[0]
    probe = train_linear_probe(train_x, train_y, num_classes, blr=best, seed=seed, **train)
    metrics = probe_metrics(probe, test_x, test_y)
    metrics.pop("loss")
    asked = {k: train[k] for k in ("epochs", "batch_size", "min_steps", "warmup_epochs") if k in train}
    batch_size, steps, epochs, warmup = probe_schedule(len(train_x), **asked)
    out = {"metrics": metrics, "blr": best, "sweep": sweep, "schedule": {
        "epochs": epochs, "warmup_epochs": warmup, "batch_size": batch_size, "steps_per_epoch": steps}}
    if len(blrs) > 1:
        out["lr_at_sweep_edge"] = best in (min(blrs), max(blrs))
        if out["lr_at_sweep_edge"]:
            wider = sorted({*blrs, best / 10 if best == min(blrs) else best * 10})
            print(f"linear probe: the chosen blr {best:g} is the {'smallest' if best == min(blrs) else 'largest'} "
                  f"of the sweep ({' '.join(f'{b:g}' for b in blrs)}), so the best may lie beyond it; "
                  f"sweep wider, e.g. --blr {' '.join(f'{b:g}' for b in wider)}", file=sys.stderr)
    return out


def evaluate_linear(model, transform, train_dataset: EvalDataset, test_dataset: EvalDataset, *,
                    epochs: int = 90, probe_batch_size: int = DEFAULT_BATCH, blrs=None, optimizer: str = "sgd",
                    weight_decay: float = 0.0, warmup_epochs: float = 10, val_fraction: float = 0.1,
                    min_steps: int = DEFAULT_MIN_STEPS, seed: int = 0, device=None, precision: str = "auto",
                    progress: bool = True, **extract) -> dict:
    """Linear probe: train on `train_dataset`'s frozen features, report top-1/top-5 on `test_dataset`.

    `probe_batch_size` is the probe's batch; `extract` holds the options of
    `features.image_features` (batch_size, num_workers, use_cache, cache_dir, model_id).
    """
    classnames = train_dataset.classnames
    train_y = train_dataset.require_labels()
    test_y = aligned_labels(test_dataset, classnames)
    if extract.get("use_cache", True) and not extract.get("model_id"):
        extract["model_id"] = fingerprint_model(model)  # hash once for both splits
    train_x, kind = image_features(model, train_dataset, transform, kind="pooled", device=device,
                                   precision=precision, progress=progress, **extract)
    test_x, _ = image_features(model, test_dataset, transform, kind="pooled", device=device,
                               precision=precision, progress=progress, **extract)
    probe_device = device if device is not None else "cpu"
    out = linear_probe(train_x, train_y, test_x, test_y, len(classnames), blrs=blrs,
                       val_fraction=val_fraction, seed=seed, epochs=epochs, batch_size=probe_batch_size,
                       optimizer=optimizer, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                       min_steps=min_steps, device=probe_device, progress=progress)
    out.update(feature=feature_info(kind), num_train=len(train_x), num_test=len(test_x),
               num_classes=len(classnames), feature_dim=train_x.shape[1])
    return out


def feature_info(kind: str) -> dict:
    if kind == "pooled":
        return {"kind": "pooled", "source": "forward_features(x)[:, prefix:].mean(1)",
                "note": "mean of patch tokens after the final norm, cls excluded"}
    return {"kind": "embed", "source": "encode_image(x)",
            "note": "model has no forward_features; fell back to encode_image (joint-space embedding)"}


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    out = evaluate_linear(loaded.model, loaded.transform, train, test, device=device, precision=precision,
                          **options, **extract)
    # The record's settings say what ran: epochs raised to reach --min-steps, the batch capped at the split.
    schedule = out.pop("schedule")
    out["settings"] = {"epochs": schedule["epochs"], "warmup_epochs": schedule["warmup_epochs"],
                       "probe_batch_size": schedule["batch_size"]}
    return out
