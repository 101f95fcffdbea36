"""Zero-shot image-text retrieval (paper Sec. 4.4, Table 7), with several captions per image.

Recall@K as in CLIP-like papers and CLIP_benchmark: an image query is correct when any of its
captions is among the K most similar captions; a caption query when its image is among the K most
similar images. K larger than the number of candidates counts every candidate (recall 1).
Metrics are fractions in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .datasets import EvalDataset
from .features import image_features, text_features
from .protocol import DEFAULT_KS


def _hits(scores: torch.Tensor, positive: torch.Tensor, k: int) -> torch.Tensor:
    """Per query (row): is any positive column among the top k scores?"""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices  # topk, as CLIP_benchmark: same ties
    return positive.gather(1, top).any(dim=1)


def recall_at_k(scores: torch.Tensor, text_image_index, ks=DEFAULT_KS) -> dict:
    """R@K both ways from a caption-by-image similarity matrix `scores` [T, I].

    `text_image_index[j]` is the image of caption j.
    """
    index = torch.as_tensor(text_image_index, dtype=torch.long)
    if len(index) != scores.shape[0]:
        raise ValueError(f"{len(index)} caption-to-image indices for {scores.shape[0]} captions")
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(index)), index] = True
    # Exact fractions of the queries (hits / queries), not float32 means with float32's noise in the JSON.
    share = lambda hits: int(hits.sum()) / len(hits) if len(hits) else float("nan")  # noqa: E731
    metrics = {}
    for k in ks:
        metrics[f"image_to_text_R@{k}"] = share(_hits(scores.T, positive.T, k))
    for k in ks:
        metrics[f"text_to_image_R@{k}"] = share(_hits(scores, positive, k))
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    return metrics


def retrieval_metrics(image_emb: torch.Tensor, text_emb: torch.Tensor, text_image_index,
                      ks=DEFAULT_KS) -> dict:
    """R@K both ways from embeddings (cosine similarity; they need not be unit norm)."""
    scores = F.normalize(text_emb.float(), dim=-1) @ F.normalize(image_emb.float(), dim=-1).T
    return recall_at_k(scores, text_image_index, ks)


def evaluate_retrieval(model, tokenizer, transform, dataset: EvalDataset, *, ks=DEFAULT_KS,
                       device=None, precision: str = "auto", text_batch_size: int = 256,
                       progress: bool = True, **extract) -> dict:
    """Image-to-text and text-to-image retrieval on `dataset` (needs captions; used as given, no prompt)."""
    captions = dataset.require_captions()
    texts = [c for caps in captions for c in caps]
    index = [i for i, caps in enumerate(captions) for _ in caps]
    img, _ = image_features(model, dataset, transform, kind="embed", device=device, precision=precision,
                            progress=progress, **extract)
    txt = text_features(model, tokenizer, texts, batch_size=text_batch_size, device=device,
                        precision=precision, progress=progress)
    return {"metrics": retrieval_metrics(img, txt, index, ks), "num_images": len(captions),
            "num_captions": len(texts)}


def _run(loaded, test, train, *, device, precision, extract, **options) -> dict:
    return evaluate_retrieval(loaded.model, loaded.tokenizer, loaded.transform, test, device=device,
                              precision=precision, **options, **extract)
