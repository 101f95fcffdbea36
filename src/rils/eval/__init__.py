"""The paper's evaluation protocols, for rils checkpoints and any open_clip-style model.

A model needs `encode_image(images, normalize=False)` and `encode_text(tokens, normalize=False)`;
the linear probe and few-shot protocols use `forward_features` when the model has it, fine-tuning
needs `timm_model_name`, `timm_kwargs` and `visual.trunk` (rils checkpoints). Metrics are fractions
in [0, 1]. See `rils eval --help` for the command line, and rils.eval.protocol for what a protocol
declares (and how to add one).
"""
from .datasets import EvalDataset, aligned_labels, load_dataset
from .features import default_cache_dir, image_features, text_features
from .fewshot import evaluate_fewshot, fewshot, sample_fewshot
from .finetune import build_classifier, evaluate_finetune
from .linear import evaluate_linear, linear_probe, train_linear_probe
from .models import (LoadedModel, default_tau, eval_transform, fingerprint_file, fingerprint_model,
                     load_for_eval)
from .prompts import get_classnames, get_templates
from .retrieval import evaluate_retrieval, recall_at_k, retrieval_metrics
from .protocol import Protocol
from .runner import PROTOCOLS, REGISTRY, get_protocol, run_protocol
from .zeroshot import classification_metrics, evaluate_zeroshot, zeroshot_classifier, zeroshot_logits

__all__ = [
    "PROTOCOLS", "REGISTRY", "EvalDataset", "LoadedModel", "Protocol", "aligned_labels", "build_classifier",
    "classification_metrics", "default_cache_dir", "default_tau", "eval_transform", "evaluate_fewshot",
    "evaluate_finetune", "evaluate_linear", "evaluate_retrieval", "evaluate_zeroshot", "fewshot",
    "fingerprint_file", "fingerprint_model", "get_classnames", "get_protocol", "get_templates",
    "image_features", "linear_probe", "load_dataset", "load_for_eval", "recall_at_k", "retrieval_metrics",
    "run_protocol", "sample_fewshot", "text_features", "train_linear_probe", "zeroshot_classifier",
    "zeroshot_logits",
]
