"""The paper's evaluation protocols, for rils checkpoints and any open_clip-style model.

A model needs `encode_image(images, normalize=False)` and `encode_text(tokens, normalize=False)`;
the linear probe and few-shot protocols use `forward_features` when the model has it, fine-tuning
needs `timm_model_name`, `timm_kwargs` and `visual.trunk` (rils checkpoints). Metrics are fractions
in [0, 1]. See `rils eval --help` for the command line, and rils.eval.protocol for what a protocol
declares (and how to add one).

The names below are imported lazily, as the package root's are: `rils.eval.cli` and
`rils.eval.protocol` (what `rils eval --help` reads) load without torch.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

# public name -> the module of rils.eval that defines it
_EXPORTS = {
    "EvalDataset": "datasets", "aligned_labels": "datasets", "load_dataset": "datasets",
    "default_cache_dir": "features", "image_features": "features", "text_features": "features",
    "evaluate_fewshot": "fewshot", "fewshot": "fewshot", "sample_fewshot": "fewshot",
    "build_classifier": "finetune", "evaluate_finetune": "finetune",
    "evaluate_linear": "linear", "linear_probe": "linear", "train_linear_probe": "linear",
    "LoadedModel": "models", "default_tau": "models", "eval_transform": "models", "fingerprint_file": "models",
    "fingerprint_model": "models", "load_for_eval": "models",
    "get_classnames": "prompts", "get_templates": "prompts",
    "evaluate_retrieval": "retrieval", "recall_at_k": "retrieval", "retrieval_metrics": "retrieval",
    "Protocol": "protocol",
    "PROTOCOLS": "runner", "REGISTRY": "runner", "get_protocol": "runner", "run_protocol": "runner",
    "classification_metrics": "zeroshot", "evaluate_zeroshot": "zeroshot", "zeroshot_classifier": "zeroshot",
    "zeroshot_logits": "zeroshot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(__all__) | set(globals()))


class _Package(types.ModuleType):
    """`rils.eval.fewshot` stays the function, as when these names were imported eagerly: importing
    the submodule of the same name binds the package's attribute to the module after it runs, which
    would otherwise make `from rils.eval import fewshot` return the module or the function depending
    on what was imported first."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .datasets import EvalDataset, aligned_labels, load_dataset
    from .features import default_cache_dir, image_features, text_features
    from .fewshot import evaluate_fewshot, fewshot, sample_fewshot
    from .finetune import build_classifier, evaluate_finetune
    from .linear import evaluate_linear, linear_probe, train_linear_probe
    from .models import (LoadedModel, default_tau, eval_transform, fingerprint_file, fingerprint_model,
                         load_for_eval)
    from .prompts import get_classnames, get_templates
    from .protocol import Protocol
    from .retrieval import evaluate_retrieval, recall_at_k, retrieval_metrics
    from .runner import PROTOCOLS, REGISTRY, get_protocol, run_protocol
    from .zeroshot import classification_metrics, evaluate_zeroshot, zeroshot_classifier, zeroshot_logits
