"""`rils eval detect`: object detection and instance segmentation by fine-tuning (paper Sec. 4.2,
Table 2 on COCO and LVIS, Table 5 low-shot COCO), ViTDet's recipe (detectron2 projects/ViTDet).

Model: vitdet.py (samvit trunk with window attention and four global blocks, SimpleFPN, torchvision
Mask R-CNN with a 2-conv RPN head and LayerNorm'd 4-conv box and mask heads). Data: det_data.py
(COCO layout, large-scale jitter). Recipe (ViTDet ViT-B COCO): 1024 px, batch 64, AdamW lr 1e-4,
betas (0.9, 0.999), weight decay 0.1 (none on norms, biases, absolute positions), layer-wise lr
decay 0.7, drop path 0.1, 250 warm-up iterations from 0.001, lr ×0.1 at 88.9% and 96.3% of the run.
The paper fine-tunes 25 epochs (Table 2) and 12 on 1%..50% of the annotated training images
(Table 5): `--epochs`, converted to iterations with the training images actually used, or `--steps`;
`--train-fraction F --seed S` draws the images.

Evaluation on the val split: boxes and masks (pasted at image resolution by torchvision, thresholded
at 0.5, RLE-encoded) as a COCO results file, scored by faster-coco-eval's COCOeval (the pycocotools
numbers, in C++): `metrics.bbox` and `metrics.segm` hold AP, AP50, AP75, APs, APm, APl as fractions
(None where the library gives -1: no ground truth of that size). An LVIS-style JSON adds APr, APc,
APf (LVIS's 300 detections per image). As detectron2 does, mask AP is computed from results without
their boxes, so small/medium/large go by mask area.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ...distributed import rank, world_size
from ...precision import autocast
from ..protocol import own_loop_options

_PATH_OPTIONS = ("train_json", "train_images", "val_json", "val_images")
_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[:6], pycocotools' order
LVIS_MAX_DETS = 300


def load_split(dataset: str, split: str, *, train_json=None, train_images=None, val_json=None,
               val_images=None, **_other_options):
    """The CocoInstances of `split` (train, or val/test = val2017) of DATASET or the explicit paths."""
    from .det_data import CocoInstances, split_paths

    json_path, images = (train_json, train_images) if split == "train" else (val_json, val_images)
    return CocoInstances(*split_paths(dataset, split, json_path=json_path, images=images), split)


def detection_loss(model, batch, device):
    """`finetune`'s loss_fn: the sum of torchvision Mask R-CNN's five losses (RPN objectness and
    box, classification, box regression, mask), each also logged."""
    images, targets = batch
    images = [x.to(device, non_blocking=True) for x in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    losses = model(images, targets)
    return sum(losses.values()), {k: v.detach() for k, v in losses.items()}


def coco_results(output: dict, image_id: int, category_id) -> list[dict]:
    """One image's detections as COCO results: xywh boxes, the dataset's own category ids, masks as
    compressed RLE with str counts (JSON-ready)."""
    from faster_coco_eval.core import mask as mask_util

    boxes = output["boxes"].float().cpu()
    boxes[:, 2:] -= boxes[:, :2]
    masks = (output["masks"][:, 0].float() > 0.5).cpu().numpy().astype(np.uint8)
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
    return [{"image_id": int(image_id), "category_id": int(category_id(int(label))),
             "bbox": [round(float(v), 2) for v in box], "score": round(float(score), 5),
             "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}}
            for box, label, score, rle in zip(boxes.tolist(), output["labels"].tolist(),
                                              output["scores"].tolist(), rles)]


@torch.no_grad()
def predict(detector, data, *, device, precision: str, batch_size: int = 4, num_workers: int = 0,
            progress: bool = True) -> list[dict]:
    """COCO results of `detector` on every image of `data` (a CocoInstances); with several ranks
    each predicts every world-th image and all get the whole list."""
    from .det_data import TestImages, collate_lists

    detector.eval()
    shard = TestImages(data, range(rank(), len(data), world_size()))
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_lists)
    results = []
    for images, ids in tqdm(loader, desc="detect eval", disable=not progress, leave=False):
        with autocast(device, precision):
            outputs = detector([x.to(device) for x in images])
        for out, image_id in zip(outputs, ids):
            results += coco_results(out, image_id, data.category_id)
    if world_size() > 1:
        import torch.distributed as dist

        parts = [None] * world_size()
        dist.all_gather_object(parts, results)
        results = [r for part in parts for r in part]
    return sorted(results, key=lambda r: (r["image_id"], -r["score"]))


def _mean_ap(precision: np.ndarray, categories) -> float | None:
    # pycocotools' summarize for AP at all areas and the largest maxDets, over some categories.
    s = precision[:, :, categories, 0, -1]
    s = s[s > -1]
    return float(s.mean()) if s.size else None


def coco_metrics(gt, results: list[dict], *, lvis: bool = False) -> dict:
    """{"bbox": {...}, "segm": {...}} of COCO `results` against `gt` (a faster_coco_eval COCO)."""
    from faster_coco_eval import COCOeval_faster

    metrics = {}
    for iou_type in ("bbox", "segm"):
        dets = copy.deepcopy(results)  # loadRes writes into them
        if iou_type == "segm":
            for d in dets:
                d.pop("bbox", None)  # detectron2: mask AP's area ranges by mask area, not box area
        ev = COCOeval_faster(gt, gt.loadRes(dets), iou_type, lvis_style=lvis)
        if lvis:
            ev.params.maxDets = [LVIS_MAX_DETS]
        ev.run()
        m = {k: (None if v < 0 else float(v)) for k, v in zip(_STATS, ev.stats[:6])}
        if lvis:  # ev.freq_groups: category positions of LVIS's rare, common, frequent groups
            m.update({k: _mean_ap(ev.eval["precision"], g) for k, g in zip(("APr", "APc", "APf"), ev.freq_groups)})
        metrics[iou_type] = m
    return metrics


def _ids_digest(ids) -> str:
    return hashlib.sha256(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()[:16]


def evaluate_detect(model, train, test, *, size: int = 1024, batch: int = 64, epochs: float = 25,
                    steps: int | None = None, lr: float = 1e-4, weight_decay: float = 0.1,
                    layer_decay: float = 0.7, drop_path: float = 0.1, warmup_steps: int = 250,
                    clip_grad: float | None = None, window_size: int | None = None,
                    fpn_channels: int = 256, box_head_dim: int = 1024, rpn_batch: int = 256,
                    roi_batch: int = 512, proposals: int = 1000, max_dets: int | None = None,
                    score_thresh: float = 0.05, train_fraction: float = 1.0, seed: int = 0,
                    work_dir=None, resume: bool = False, checkpoint_every: int = 1000,
                    save_predictions=None, eval_batch: int = 4, device=None, precision: str = "fp32",
                    num_workers: int = 0, progress: bool = True) -> dict:
    """Fine-tune ViTDet's Mask R-CNN on `train`'s annotated images, evaluate on all of `test`
    (both CocoInstances). `batch` is the global batch, split over the ranks."""
    from .det_data import TrainImages, collate_lists, train_subset
    from .loop import build_optimizer, finetune, init_distributed, is_main, warmup_step
    from .vitdet import build_detector

    if train.cat_ids != test.cat_ids:
        raise ValueError(f"{train.json_path} and {test.json_path} list different categories")
    if batch < 1 or batch % world_size():
        raise ValueError(f"--batch {batch} must be a positive multiple of the {world_size()} ranks")
    device = init_distributed(device if device is not None else "auto")
    annotated = train.annotated()
    if not annotated:
        raise ValueError(f"{train.json_path} has no image with a (non-crowd) instance to train on")
    indices = train_subset(annotated, train_fraction, seed)
    if steps is None:
        steps = max(1, round(epochs * len(indices) / batch))
    warmup = min(warmup_steps, steps)
    max_dets = max_dets or (LVIS_MAX_DETS if test.lvis else 100)

    torch.manual_seed(seed)  # the new heads' initialisation
    detector = build_detector(model, len(train.cat_ids), size=size, window_size=window_size,
                              drop_path_rate=drop_path, fpn_channels=fpn_channels, box_head_dim=box_head_dim,
                              rpn_batch=rpn_batch, roi_batch=roi_batch, proposals=proposals,
                              max_dets=max_dets, score_thresh=score_thresh).to(device)
    optimizer = build_optimizer(detector, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay)
    train_ids = [train.image_ids[i] for i in indices]
    settings = dict(data=train.cache_id, train_images=_ids_digest(train_ids), size=size, batch=batch,
                    steps=steps, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay,
                    drop_path=drop_path, warmup_steps=warmup, window_size=window_size,
                    fpn_channels=fpn_channels, box_head_dim=box_head_dim, rpn_batch=rpn_batch,
                    roi_batch=roi_batch, proposals=proposals, seed=seed, clip_grad=clip_grad)
    if work_dir is not None and is_main():
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        (Path(work_dir) / "train_image_ids.json").write_text(json.dumps(train_ids))
    run = finetune(detector, TrainImages(train, indices, size, model.image_mean), loss_fn=detection_loss,
                   optimizer=optimizer, lr_factor=warmup_step(warmup, steps), steps=steps,
                   batch_size=batch // world_size(), work_dir=work_dir, seed=seed,
                   checkpoint_every=checkpoint_every, resume=resume, device=device, precision=precision,
                   num_workers=num_workers, progress=progress, desc="detect fine-tune",
                   collate_fn=collate_lists, clip_grad=clip_grad, settings=settings)

    results = predict(detector, test, device=device, precision=precision, batch_size=eval_batch,
                      num_workers=num_workers, progress=progress)
    if save_predictions and is_main():
        Path(save_predictions).parent.mkdir(parents=True, exist_ok=True)
        Path(save_predictions).write_text(json.dumps(results))
    return {"metrics": coco_metrics(test.coco, results, lvis=test.lvis), "lvis": test.lvis,
            **run, "train_images": len(indices), "train_images_annotated": len(annotated),
            "train_image_ids_sha256": _ids_digest(train_ids), "num_test": len(test),
            "num_classes": len(test.cat_ids), "num_predictions": len(results), "warmup_steps": warmup,
            "max_dets": max_dets}


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    options = {k: v for k, v in options.items() if k not in _PATH_OPTIONS}   # they went to load_split
    return evaluate_detect(loaded.model, train, test, device=device, precision=precision, **options,
                           **own_loop_options(extract))
