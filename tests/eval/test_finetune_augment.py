"""Fine-tuning's default augmentation (RandAugment rand-m9-mstd0.5-inc1) runs with the installed
timm and Pillow at every magnitude its draws can reach."""
from __future__ import annotations

import inspect
import random

import numpy as np
import pytest
from PIL import Image

from rils.eval import evaluate_finetune, load_dataset
from rils.eval.finetune import finetune_transforms

DEFAULT_AUGMENT = inspect.signature(evaluate_finetune).parameters["auto_augment"].default


def _photo(size=32, seed=0):
    """Noise over a colour gradient: every channel uses most of 0..255, as a photo does."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, size)
    arr = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                    200 - ramp[None, :].repeat(size, 0)], -1)
    return Image.fromarray((arr + rng.integers(0, 56, (size, size, 3))).astype(np.uint8))


def _rand_augment_ops():
    from timm.data.auto_augment import RandAugment

    train, _ = finetune_transforms(32, (0.5,) * 3, (0.5,) * 3, auto_augment=DEFAULT_AUGMENT, reprob=0.25)
    (ra,) = [t for t in train.transforms if isinstance(t, RandAugment)]
    return ra.ops


def test_every_rand_augment_op_runs_at_every_reachable_magnitude():
    """Each op of the default policy, applied at magnitudes 0..10 and beyond both ends (mstd draws
    there; timm clamps them to [0, 10]), returns an RGB image of the same size instead of raising
    (PosterizeIncreasing asks Pillow for 0 bits at magnitude 10)."""
    ops = _rand_augment_ops()
    assert DEFAULT_AUGMENT == "rand-m9-mstd0.5-inc1"
    assert len(ops) == 15 and "PosterizeIncreasing" in {op.name for op in ops}
    assert {(op.magnitude, op.magnitude_std) for op in ops} == {(9, 0.5)}
    img = _photo()
    random.seed(0)
    for op in ops:
        op.prob, op.magnitude_std = 1.0, 0  # always applied, at exactly the magnitude set below
        for magnitude in [-1, *range(11), 9.999, 11, 100]:
            op.magnitude = magnitude
            for _ in range(2):  # Rotate, Shear, Translate draw a sign
                out = op(img)
                assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == img.size, \
                    (op.name, magnitude)


def test_posterize_to_zero_bits_is_a_black_image():
    """Keeping 0 bits gives the black image earlier Pillow (and TensorFlow's posterize) gave."""
    (op,) = [op for op in _rand_augment_ops() if op.name == "PosterizeIncreasing"]
    op.prob, op.magnitude_std, op.magnitude = 1.0, 0, 10
    assert not np.asarray(op(_photo())).any()
    op.magnitude = 5  # 4 - int(2.0) = 2 bits kept: the two top bits of each value
    assert np.array_equal(np.asarray(op(_photo())), np.asarray(_photo()) & 0b11000000)


class _ExtremeDraws:
    """timm's RandAugment randomness at its edge: every chosen op applies, and every magnitude
    draw lands above the clamp (2% of real mstd0.5 draws do), so posterize keeps 0 bits."""

    def __getattr__(self, name):
        return getattr(random, name)

    def random(self):
        return 0.0

    def gauss(self, mu, sigma):
        return mu + 4 * sigma


def test_finetune_with_default_augmentation_runs_to_the_end(rils_like, tmp_path, monkeypatch):
    """`evaluate_finetune` with its default augmentation, mixup and erasing finishes one epoch on a
    10-class folder even when RandAugment draws its extreme magnitudes."""
    from timm.data import auto_augment

    monkeypatch.setattr(auto_augment, "random", _ExtremeDraws())
    for split, per_class in (("train", 3), ("test", 1)):
        for k in range(10):
            folder = tmp_path / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                _photo(seed=100 * k + 10 * (split == "test") + i).save(folder / f"{i}.png")
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    out = evaluate_finetune(rils_like, train, test, epochs=1, warmup_epochs=0, progress=False)
    assert out["num_classes"] == 10 and out["batch_size"] == 30 and len(out["history"]) == 1
    assert np.isfinite(out["history"][0]["train_loss"]) and out["metrics"]["top5"] is not None
