"""On the same model, data and templates, our zero-shot and retrieval numbers equal CLIP_benchmark's.

The reference is a verbatim copy of clip-benchmark 1.6.2's metric code (reference/, MIT licence); it
runs without autocast (amp=False), so ours runs in fp32 too ("auto" may pick bf16 on this CPU).
"""
from __future__ import annotations

import pytest
import torch

from reference import clip_benchmark_metrics as cb
from rils.eval import evaluate_retrieval, evaluate_zeroshot, get_classnames, get_templates, load_dataset


class _Classification(torch.utils.data.Dataset):
    """What CLIP_benchmark's classification loop wants: (image, target) and `.classes`."""

    def __init__(self, ds, transform):
        self.ds, self.transform, self.classes = ds, transform, ds.classnames

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.transform(self.ds.image(i)), int(self.ds.labels[i])


class _Captions(torch.utils.data.Dataset):
    def __init__(self, ds, transform):
        self.ds, self.transform = ds, transform

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.transform(self.ds.image(i)), self.ds.captions[i]


def _collate_captions(batch):  # CLIP_benchmark's image_captions_collate_fn
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


@pytest.mark.parametrize("task", ["shape", "color"])
def test_zeroshot_equals_clip_benchmark(tiny_clip, tokenizer, transform, task, tmp_path):
    ds = load_dataset("demo-shapes", "test", task=task, num_samples=48, image_size=32)
    ours = evaluate_zeroshot(tiny_clip, tokenizer, transform, ds, precision="fp32", cache_dir=tmp_path,
                             progress=False)
    key = ds.template_key
    loader = torch.utils.data.DataLoader(_Classification(ds, transform), batch_size=16)
    ref = cb.evaluate_classification(tiny_clip, loader, tokenizer, get_classnames(key), get_templates(key),
                                     "cpu", amp=False)
    m = ours["metrics"]
    # Accuracies are counts over 48 images: any disagreement is >= 1/48.
    assert m["top1"] == pytest.approx(ref["acc1"], abs=1e-6)
    assert m["top5"] == pytest.approx(ref["acc5"], abs=1e-6)
    assert m["mean_per_class"] == pytest.approx(ref["mean_per_class_recall"], abs=1e-9)
    assert 0 < m["top5"] < 1  # the comparison is not between two trivial numbers


def test_retrieval_equals_clip_benchmark(tiny_clip, tokenizer, transform, tmp_path):
    ds = load_dataset("demo-shapes", "test", kind="retrieval", num_samples=24, image_size=32)
    ours = evaluate_retrieval(tiny_clip, tokenizer, transform, ds, precision="fp32", cache_dir=tmp_path,
                              progress=False)
    loader = torch.utils.data.DataLoader(_Captions(ds, transform), batch_size=8, collate_fn=_collate_captions)
    ref = cb.evaluate_retrieval(tiny_clip, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])
    m = ours["metrics"]
    for k in (1, 5, 10):
        # CLIP_benchmark: "image_retrieval" = caption queries, "text_retrieval" = image queries.
        assert m[f"text_to_image_R@{k}"] == pytest.approx(ref[f"image_retrieval_recall@{k}"], abs=1e-6)
        assert m[f"image_to_text_R@{k}"] == pytest.approx(ref[f"text_retrieval_recall@{k}"], abs=1e-6)
    assert 0 < m["text_to_image_R@5"] < 1 and 0 < m["image_to_text_R@1"] < 1


def test_recall_matches_clip_benchmark_on_random_scores():
    from rils.eval import recall_at_k

    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, 30, (90,), generator=g)
    index[:30] = torch.arange(30)  # every image has at least one caption
    scores = torch.randn(90, 30, generator=g)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(90), index] = True
    ours = recall_at_k(scores, index, ks=(1, 5, 10))
    for k in (1, 5, 10):
        t2i = (cb.batchify(cb.recall_at_k, scores, positive, 7, "cpu", k=k) > 0).float().mean().item()
        i2t = (cb.batchify(cb.recall_at_k, scores.T, positive.T, 7, "cpu", k=k) > 0).float().mean().item()
        assert ours[f"text_to_image_R@{k}"] == pytest.approx(t2i)
        assert ours[f"image_to_text_R@{k}"] == pytest.approx(i2t)
