"""Run one protocol on a loaded model and a named or path dataset; returns a JSON-ready record."""
from __future__ import annotations

import time

from .datasets import load_dataset
from .fewshot import evaluate_fewshot
from .finetune import evaluate_finetune
from .linear import evaluate_linear
from .models import LoadedModel
from .patchseg import evaluate_patchseg
from .retrieval import evaluate_retrieval
from .zeroshot import evaluate_zeroshot

PROTOCOLS = ("zeroshot", "retrieval", "linear", "fewshot", "finetune", "patchseg")
TRAINS = ("linear", "fewshot", "finetune")  # protocols that need a train split


def run_protocol(loaded: LoadedModel, protocol: str, dataset: str, *, split: str = "test",
                 train_split: str = "train", dataset_options: dict | None = None,
                 num_train_samples: int | None = None, device=None, amp: bool = False,
                 extract: dict | None = None, **options) -> dict:
    """Evaluate `loaded` with `protocol` on `dataset` (a name or a path).

    `dataset_options` go to `load_dataset` (task, num_samples, csv keys, ...); `num_train_samples`
    overrides `num_samples` for the train split (demo-shapes); `extract` goes to the feature
    extraction (batch_size, num_workers, use_cache, cache_dir, progress); `options` to the protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    started = time.time()
    dopts = dict(dataset_options or {})
    kind = "retrieval" if protocol == "retrieval" else "classification"
    test = load_dataset(dataset, split, kind=kind, **dopts)
    train = None
    if protocol in TRAINS:
        if num_train_samples is not None:
            dopts["num_samples"] = num_train_samples
        elif dataset == "demo-shapes":
            dopts.pop("num_samples", None)  # the eval split's size is no size for the train split
        train = load_dataset(dataset, train_split, kind=kind, **dopts)
        if train.cache_id == test.cache_id:
            raise ValueError(f"train and {split} splits of {dataset!r} are the same data; give a path "
                             f"with {{split}} or a folder with train/ and test/ sub-folders")
    if protocol in ("zeroshot", "retrieval", "patchseg") and loaded.tokenizer is None:
        raise ValueError(f"{protocol} needs a text tower; {loaded.spec} has none")

    extract = dict(extract or {})
    extract.setdefault("model_id", loaded.model_id)
    common = dict(device=device, amp=amp)
    m, tf = loaded.model, loaded.transform
    if protocol == "zeroshot":
        result = evaluate_zeroshot(m, loaded.tokenizer, tf, test, **common, **options, **extract)
    elif protocol == "retrieval":
        result = evaluate_retrieval(m, loaded.tokenizer, tf, test, **common, **options, **extract)
    elif protocol == "linear":
        result = evaluate_linear(m, tf, train, test, **common, **options, **extract)
    elif protocol == "fewshot":
        result = evaluate_fewshot(m, tf, train, test, **common, **options, **extract)
    elif protocol == "patchseg":  # no feature cache: it needs every patch, not one vector per image
        result = evaluate_patchseg(m, loaded.tokenizer, tf, test, **common, **options, **extract)
    else:
        ft = {k: extract[k] for k in ("num_workers", "progress") if k in extract}
        result = evaluate_finetune(m, train, test, **common, **options, **ft)
    return {"protocol": protocol, "dataset": dataset, "split": test.split,
            "train_split": train.split if train is not None else None,
            "checkpoint": loaded.spec, "model_id": loaded.model_id, **result,
            "settings": dict(options), "device": str(device) if device is not None else None, "amp": amp,
            "seconds": round(time.time() - started, 2)}
