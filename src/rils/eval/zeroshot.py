"""Zero-shot classification (paper Sec. 4.4, Table 6), computed as CLIP and CLIP_benchmark do.

A class embedding is the mean of its prompts' normalised text embeddings, renormalised; an image
is assigned by cosine similarity. Metrics are fractions in [0, 1]: top-1, top-5 (None with fewer
than 5 classes, where CLIP_benchmark reports NaN) and mean per-class recall (balanced accuracy).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..precision import autocast
from .datasets import EvalDataset
from .features import eval_mode, image_features, model_device
from .prompts import fill, get_classnames, get_templates, has_shipped, is_imagenet_synsets, synset_classnames


def zeroshot_classifier(model, tokenizer, classnames: list[str], templates: list[str], *,
                        device=None, precision: str = "auto") -> torch.Tensor:
    """[C, D] unit-norm class embeddings, one per class name."""
    device = torch.device(device) if device is not None else model_device(model)
    weights = []
    with eval_mode(model), torch.inference_mode(), autocast(device, precision):
        for name in classnames:
            tokens = tokenizer([fill(t, name) for t in templates]).to(device)
            emb = F.normalize(model.encode_text(tokens).float(), dim=-1).mean(dim=0)
            weights.append(emb / emb.norm())
    return torch.stack(weights).cpu()


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    # torch.topk as in CLIP_benchmark, so that ties resolve identically.
    pred = logits.topk(k, dim=1).indices
    # The exact fraction (6703 / 10000 = 0.6703), not a float32 mean (0.6703000068664551 in the JSON).
    hits = int((pred == targets[:, None]).any(dim=1).sum())
    return hits / len(targets) if len(targets) else float("nan")


def mean_per_class_recall(pred: torch.Tensor, targets: torch.Tensor) -> float:
    """Recall averaged over the classes that occur in `targets` (= sklearn's balanced accuracy)."""
    pred, targets = np.asarray(pred), np.asarray(targets)
    return float(np.mean([(pred[targets == c] == c).mean() for c in np.unique(targets)]))


def classification_metrics(logits: torch.Tensor, targets) -> dict:
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    num_classes = logits.shape[1]
    return {
        "top1": topk_accuracy(logits, targets, 1),
        "top5": topk_accuracy(logits, targets, 5) if num_classes >= 5 else None,
        "mean_per_class": mean_per_class_recall(logits.argmax(dim=1), targets),
    }


def zeroshot_logits(image_emb: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Cosine similarities [N, C] between images and class embeddings."""
    return F.normalize(image_emb.float(), dim=-1) @ classifier.float().T


def evaluate_zeroshot(model, tokenizer, transform, dataset: EvalDataset, *, classnames=None,
                      templates=None, device=None, precision: str = "auto", **extract) -> dict:
    """Zero-shot classification of `dataset` (needs labels).

    `classnames` / `templates`: a list, a key of the shipped JSON files, or a JSON file; by default
    the dataset's shipped entry (the dataset's own class names and the generic "default" templates
    for a path dataset; `imagenet1k`'s names and 80 templates for a folder of ImageNet synsets). `extract`: options of `features.image_features` (batch_size, cache, ...).
    """
    labels = dataset.require_labels()
    key = dataset.template_key
    if classnames is None:
        classnames = get_classnames(key) if key and has_shipped("classnames", key) else \
            [c.replace("_", " ") for c in dataset.classnames]  # folder names often use underscores
    else:
        classnames = get_classnames(classnames, key)
    if len(classnames) != len(dataset.classnames) and is_imagenet_synsets(dataset.classnames):
        classnames = synset_classnames(dataset.classnames, classnames)   # a synset folder, all or part of ImageNet
    if len(classnames) != len(dataset.classnames):
        raise ValueError(f"{len(classnames)} class names given for {len(dataset.classnames)} classes")
    if templates is None:
        templates = key if key and has_shipped("templates", key) else "default"
    templates = get_templates(templates, key)

    feats, _ = image_features(model, dataset, transform, kind="embed", device=device, precision=precision,
                              **extract)
    classifier = zeroshot_classifier(model, tokenizer, classnames, templates, device=device,
                                     precision=precision)
    metrics = classification_metrics(zeroshot_logits(feats, classifier), labels)
    return {"metrics": metrics, "num_samples": len(dataset), "num_classes": len(classnames),
            "classnames": classnames, "templates": templates}


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    return evaluate_zeroshot(loaded.model, loaded.tokenizer, loaded.transform, test, device=device,
                             precision=precision, **options, **extract)
