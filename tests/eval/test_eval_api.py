"""The Python API end to end: a tiny open_clip model and a tiny rils-like model (timm trunk)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eval_helpers import make_image_folder
from rils.eval import (build_classifier, evaluate_fewshot, evaluate_finetune, evaluate_linear,
                       evaluate_retrieval, evaluate_zeroshot, load_dataset)


@pytest.fixture
def folders(tmp_path):
    make_image_folder(tmp_path / "train", classes=("dark_thing", "light_thing"), per_class=6, seed=0)
    make_image_folder(tmp_path / "test", classes=("dark_thing", "light_thing"), per_class=3, seed=1)
    return load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")


def test_open_clip_zeroshot_on_a_folder(tiny_clip, tokenizer, transform, folders, tmp_path):
    _, test = folders
    out = evaluate_zeroshot(tiny_clip, tokenizer, transform, test, cache_dir=tmp_path / "c", progress=False)
    assert out["classnames"] == ["dark thing", "light thing"]  # underscores read as spaces
    assert out["templates"][0] == "a photo of a {c}." and out["num_samples"] == 6
    m = out["metrics"]
    assert m["top5"] is None and m["top1"] in {k / 6 for k in range(7)}
    # Given templates and names are used as given.
    out2 = evaluate_zeroshot(tiny_clip, tokenizer, transform, test, classnames=["a", "b"],
                             templates=["{c}"], cache_dir=tmp_path / "c", progress=False)
    assert out2["templates"] == ["{c}"] and out2["classnames"] == ["a", "b"]
    with pytest.raises(ValueError, match="3 class names given for 2 classes"):
        evaluate_zeroshot(tiny_clip, tokenizer, transform, test, classnames=["a", "b", "c"], progress=False)


def test_open_clip_retrieval_on_a_caption_csv(tiny_clip, tokenizer, transform, tmp_path):
    make_image_folder(tmp_path / "img", classes=("a", "b", "c"), per_class=1)
    rows = ["filepath,caption"] + [f"img/{c}/0.png,caption {i} of {c}" for c in "abc" for i in range(2)]
    (tmp_path / "caps.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(str(tmp_path / "caps.csv"), kind="retrieval")
    out = evaluate_retrieval(tiny_clip, tokenizer, transform, ds, ks=(1, 3), progress=False,
                             cache_dir=tmp_path)
    assert out["num_images"] == 3 and out["num_captions"] == 6
    assert out["metrics"]["image_to_text_R@3"] >= out["metrics"]["image_to_text_R@1"]
    assert out["metrics"]["text_to_image_R@3"] == 1.0  # 3 images: top 3 is everything


def test_open_clip_linear_probe_falls_back_to_encode_image(tiny_clip, transform, folders, tmp_path):
    train, test = folders
    out = evaluate_linear(tiny_clip, transform, train, test, epochs=5, warmup_epochs=1,
                          cache_dir=tmp_path, progress=False)
    assert out["feature"]["kind"] == "embed" and "fell back to encode_image" in out["feature"]["note"]
    assert out["feature_dim"] == 32 and out["num_train"] == 12 and out["num_test"] == 6


def test_rils_like_linear_and_fewshot_use_pooled_patch_tokens(rils_like, transform, folders, tmp_path):
    train, test = folders
    out = evaluate_linear(rils_like, transform, train, test, epochs=30, warmup_epochs=2,
                          optimizer="sgd", blrs=[5.0], probe_batch_size=4, cache_dir=tmp_path, progress=False)
    assert out["feature"]["kind"] == "pooled" and out["feature_dim"] == 32
    assert out["metrics"]["top1"] == 1.0  # dark vs light images: trivially separable
    few = evaluate_fewshot(rils_like, transform, train, test, shots=(1, 2), seeds=2, cache_dir=tmp_path,
                           progress=False)
    assert set(few["metrics"]) == {"1-shot_mean", "1-shot_std", "2-shot_mean", "2-shot_std"}
    assert few["feature"]["kind"] == "pooled" and len(few["runs"]["2-shot"]) == 2
    assert few["metrics"]["2-shot_mean"] == 1.0


def test_fewshot_encodes_only_the_drawn_train_images(rils_like, transform, folders, tmp_path):
    train, test = folders
    rils_like.calls = 0
    evaluate_fewshot(rils_like, transform, train, test, shots=(1,), seeds=1, use_cache=False,
                     batch_size=64, progress=False)
    assert rils_like.calls == 2  # one batch of 2 drawn train images + one batch of the test split


def test_finetune_rils_like_end_to_end(rils_like, folders):
    train, test = folders
    trunk_before = {k: v.clone() for k, v in rils_like.visual.trunk.state_dict().items()}
    out = evaluate_finetune(rils_like, train, test, epochs=2, warmup_epochs=1, batch_size=4,
                            blr=1e-3, progress=False, return_model=True)
    net = out["model"]
    assert out["num_classes"] == 2 and len(out["history"]) == 2 and out["batch_size"] == 4
    assert all(np.isfinite(h["train_loss"]) for h in out["history"])
    assert out["metrics"]["top1"] in {k / 6 for k in range(7)} and out["metrics"]["top5"] is None
    assert net.head.out_features == 2 and net.global_pool == "avg"
    assert out["lr"] == pytest.approx(1e-3 * 4 / 256)
    # Fine-tuning trains a copy: the evaluated model is untouched.
    assert all(torch.equal(v, rils_like.visual.trunk.state_dict()[k]) for k, v in trunk_before.items())


def test_build_classifier_loads_the_trunk(rils_like):
    net = build_classifier(rils_like, num_classes=5, drop_path_rate=0.2)
    trunk = rils_like.visual.trunk.state_dict()
    for k, v in net.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, trunk[k]), k
    assert net.head.weight.shape == (5, 32) and torch.all(net.head.bias == 0)
    assert net.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)  # timm: the rate at the last block
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    with torch.no_grad():  # same features as the trunk: global average of normed patch tokens
        assert torch.allclose(net.forward_head(net.forward_features(x), pre_logits=True),
                              rils_like.visual.trunk(x), atol=1e-6)


def test_finetune_needs_a_timm_trunk(tiny_clip, folders):
    train, test = folders
    with pytest.raises(ValueError, match="timm_model_name"):
        evaluate_finetune(tiny_clip, train, test, epochs=1, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
