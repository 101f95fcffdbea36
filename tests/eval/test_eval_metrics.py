"""Zero-shot and retrieval metrics against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rils.eval import classification_metrics, recall_at_k, retrieval_metrics, zeroshot_classifier
from rils.eval.zeroshot import mean_per_class_recall, zeroshot_logits

# Captions 0,1 -> image A (0); 2 -> B (1); 3,4,5 -> C (2). Rows: captions, columns: images; no ties.
SCORES = torch.tensor([
    [0.90, 0.10, 0.00],   # t0 (A): A first
    [0.20, 0.80, 0.10],   # t1 (A): A second
    [0.10, 0.30, 0.70],   # t2 (B): B second
    [0.00, 0.60, 0.50],   # t3 (C): C second
    [0.40, 0.25, 0.20],   # t4 (C): C third
    [0.30, 0.10, 0.35],   # t5 (C): C first
])
TEXT_IMAGE = [0, 0, 1, 2, 2, 2]


def test_retrieval_recall_by_hand():
    m = recall_at_k(SCORES, TEXT_IMAGE, ks=(1, 2, 3, 10))
    # Caption queries: own image ranks 1,2,2,2,3,1.
    assert m["text_to_image_R@1"] == pytest.approx(2 / 6)
    assert m["text_to_image_R@2"] == pytest.approx(5 / 6)
    assert m["text_to_image_R@3"] == pytest.approx(1.0)
    # Image queries. A's column ranks t0 first (its own). B's: t1, t3, t2 -> own caption third.
    # C's: t2, t3, t5, ... -> t3 (one of C's three captions) second: any caption counts.
    assert m["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert m["image_to_text_R@2"] == pytest.approx(2 / 3)
    assert m["image_to_text_R@3"] == pytest.approx(1.0)
    # K beyond the number of candidates counts them all.
    assert m["image_to_text_R@10"] == 1.0 and m["text_to_image_R@10"] == 1.0
    assert m["mean_recall"] == pytest.approx(np.mean([v for k, v in m.items() if k != "mean_recall"]))


def test_retrieval_from_embeddings_uses_cosine():
    # Unit image axes, caption t0 (A's best) 10x shorter than the others: by raw dot product it
    # would drop to A's fourth caption; by cosine it stays first.
    images = torch.eye(3)
    texts = F.normalize(SCORES, dim=-1) * torch.tensor([[0.1], [1.0], [1.0], [1.0], [1.0], [1.0]])
    cos = retrieval_metrics(images, texts, TEXT_IMAGE, ks=(1, 2))
    assert cos == recall_at_k(F.normalize(SCORES, dim=-1), TEXT_IMAGE, ks=(1, 2))
    assert cos["image_to_text_R@1"] == pytest.approx(1 / 3)
    assert recall_at_k(texts, TEXT_IMAGE, ks=(1,))["image_to_text_R@1"] == 0.0
    with pytest.raises(ValueError, match="caption-to-image"):
        retrieval_metrics(images, texts, TEXT_IMAGE[:-1])


def test_classification_metrics_by_hand():
    logits = torch.tensor([
        [9, 8, 7, 6, 5, 4],   # y=0: top-1 right
        [9, 8, 7, 6, 5, 4],   # y=1: rank 2
        [0, 1, 2, 3, 4, 5],   # y=0: rank 6, outside top-5
        [1, 9, 0, 0, 0, 0],   # y=1: top-1 right
        [5, 4, 3, 2, 1, 0],   # y=2: rank 3
    ], dtype=torch.float)
    y = torch.tensor([0, 1, 0, 1, 2])
    m = classification_metrics(logits, y)
    assert m["top1"] == pytest.approx(2 / 5)
    assert m["top5"] == pytest.approx(4 / 5)
    # Recall per class: class 0 1/2, class 1 1/2, class 2 0/1 -> mean 1/3 (classes 3-5 absent).
    assert m["mean_per_class"] == pytest.approx(1 / 3)


def test_top5_is_none_with_fewer_than_5_classes():
    m = classification_metrics(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 0])
    assert m["top5"] is None and m["top1"] == 0.5 and m["mean_per_class"] == 0.5


def test_mean_per_class_equals_balanced_accuracy():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 7, 200), rng.integers(0, 7, 200)
    assert mean_per_class_recall(pred, y) == pytest.approx(balanced_accuracy_score(y, pred))


class _LookupText(torch.nn.Module):
    """encode_text returns a fixed vector per prompt; the 'tokenizer' maps prompt -> row."""

    def __init__(self, table: dict[str, list[float]]):
        super().__init__()
        self.keys = list(table)
        self.weight = torch.nn.Parameter(torch.tensor([table[k] for k in self.keys]))

    def tokenize(self, texts):
        return torch.tensor([self.keys.index(t) for t in texts])

    def encode_text(self, tokens, normalize=False):
        return self.weight[tokens]


def test_zeroshot_classifier_averages_normalised_prompts():
    table = {"a cat.": [3.0, 0.0], "the cat!": [0.0, 1.0],    # norms differ: normalise first
             "a dog.": [0.0, -2.0], "the dog!": [0.0, -5.0]}
    model = _LookupText(table)
    w = zeroshot_classifier(model, model.tokenize, ["cat", "dog"], ["a {c}.", "the {c}!"])
    s = 2 ** -0.5
    assert torch.allclose(w, torch.tensor([[s, s], [0.0, -1.0]]), atol=1e-6)
    logits = zeroshot_logits(torch.tensor([[2.0, 0.0], [0.0, -0.1]]), w)
    assert torch.allclose(logits, torch.tensor([[s, 0.0], [-s, 1.0]]), atol=1e-6)
