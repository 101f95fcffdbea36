"""Run one protocol on a loaded model and a named or path dataset; returns a JSON-ready record.

`REGISTRY` lists the protocols (their records are declared in rils.eval.protocol); the runner and
`rils eval` read everything protocol-specific from there.
"""
from __future__ import annotations

import time

from ..precision import resolve_precision
from .datasets import load_dataset
from .features import model_device
from .models import LoadedModel
from .protocol import REGISTRY, Protocol

PROTOCOLS = tuple(REGISTRY)  # the names

_CACHE_KEYS = ("use_cache", "cache_dir", "model_id")  # extraction options of the feature cache


def _skipped(*datasets) -> dict:
    """Files left out of the evaluated dataset(s), by reason (e.g. {"unreadable_image": 1}); {} if none."""
    total: dict = {}
    for ds in datasets:
        for reason, n in (getattr(ds, "skipped", None) or {}).items():
            total[reason] = total.get(reason, 0) + n
    return total


def get_protocol(name: str) -> Protocol:
    if name not in REGISTRY:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def run_protocol(loaded: LoadedModel, protocol: str, dataset: str, *, split: str = "test",
                 train_split: str = "train", dataset_options: dict | None = None,
                 num_train_samples: int | None = None, device=None, precision: str = "auto",
                 extract: dict | None = None, **options) -> dict:
    """Evaluate `loaded` with `protocol` on `dataset` (a name or a path).

    `dataset_options` go to `load_dataset` (task, num_samples, csv keys, ...); `num_train_samples`
    overrides `num_samples` for the train split (demo-shapes); `precision` is "auto", "bf16" or
    "fp32" (rils.precision; the record holds the resolved one); `extract` goes to the feature
    extraction (batch_size, num_workers, use_cache, cache_dir, progress); `options` to the protocol.
    """
    proto = get_protocol(protocol)
    started = time.time()
    dopts = dict(dataset_options or {})
    if proto.load_split is not None:   # a dense layout: the protocol reads its own data
        test = proto.load_split(dataset, split, **options)
        train = proto.load_split(dataset, train_split, **options) if proto.needs_train else None
    else:
        test = load_dataset(dataset, split, kind=proto.dataset_kind, **dopts)
        train = None
    if proto.needs_train and proto.load_split is None:
        if num_train_samples is not None:
            dopts["num_samples"] = num_train_samples
        elif dataset == "demo-shapes":
            dopts.pop("num_samples", None)  # the eval split's size is no size for the train split
        train = load_dataset(dataset, train_split, kind=proto.dataset_kind, **dopts)
        if train.cache_id == test.cache_id:
            raise ValueError(f"train and {split} splits of {dataset!r} are the same data; give a path "
                             f"with {{split}} or a folder with train/ and test/ sub-folders")
    if proto.needs_text and loaded.tokenizer is None:
        raise ValueError(f"{protocol} needs a text tower; {loaded.spec} has none")

    extract = dict(extract or {})
    if proto.uses_feature_cache:
        extract.setdefault("model_id", loaded.model_id)
    else:
        extract = {k: v for k, v in extract.items() if k not in _CACHE_KEYS}
    precision = resolve_precision(precision, device if device is not None else model_device(loaded.model))[0]
    if proto.resolve_options is not None:
        options = proto.resolve_options(loaded.model, dict(options))
    result = proto.run(loaded, test, train, device=device, precision=precision, extract=extract, **options)
    ran = result.pop("settings", {})   # options that ran otherwise than asked (Protocol.run)
    task = {"task": test.task} if getattr(test, "task", None) and proto.dataset_kind == "classification" else {}
    return {"protocol": protocol, "dataset": dataset, **task, "split": test.split,
            "train_split": train.split if train is not None else None,
            "checkpoint": loaded.spec, "model_id": loaded.model_id, **result,
            "skipped": _skipped(test, train),
            "settings": {**options, **ran}, "device": str(device) if device is not None else None,
            "precision": precision, "seconds": round(time.time() - started, 2)}
