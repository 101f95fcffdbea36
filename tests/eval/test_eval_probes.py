"""Linear probe and few-shot logistic regression on toy features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rils.eval import fewshot, linear_probe, sample_fewshot, train_linear_probe
from rils.eval.linear import linear_head


def separable(n_per_class=20, classes=4, dim=8, seed=0, scale=5.0):
    """Class c sits at scale * e_c plus small noise: linearly separable with a wide margin."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = scale * np.eye(dim)[y] + 0.3 * rng.standard_normal((len(y), dim))
    return torch.tensor(x, dtype=torch.float32), y


def test_sample_fewshot_draws_k_distinct_per_class():
    y = np.repeat(np.arange(3), 10)
    idx = sample_fewshot(y, 4, seed=1)
    assert len(idx) == 12 and len(set(idx.tolist())) == 12
    assert np.bincount(y[idx]).tolist() == [4, 4, 4]
    assert np.array_equal(idx, sample_fewshot(y, 4, seed=1))       # deterministic per seed
    assert not np.array_equal(idx, sample_fewshot(y, 4, seed=2))   # and differs across seeds
    with pytest.raises(ValueError, match="fewer than 11 shots"):
        sample_fewshot(y, 11, seed=0)


def test_fewshot_logistic_regression_separable_is_perfect():
    train_x, train_y = separable(seed=0)
    test_x, test_y = separable(n_per_class=10, seed=1)
    out = fewshot(train_x, train_y, test_x, test_y, shots=(1, 2, 5), seeds=3)
    for k in (1, 2, 5):
        assert out["metrics"][f"{k}-shot_mean"] == 1.0
        assert out["metrics"][f"{k}-shot_std"] == 0.0
        assert out["runs"][f"{k}-shot"] == [1.0, 1.0, 1.0]


def test_fewshot_mean_and_std_over_seeds():
    # Random features: accuracies vary by seed, and mean/std must be those of the runs.
    rng = np.random.default_rng(0)
    x, y = torch.tensor(rng.standard_normal((60, 5)), dtype=torch.float32), np.repeat(np.arange(3), 20)
    out = fewshot(x, y, x, y, shots=(1,), seeds=4)
    runs = out["runs"]["1-shot"]
    assert len(runs) == 4 and len(set(runs)) > 1
    assert out["metrics"]["1-shot_mean"] == pytest.approx(np.mean(runs))
    assert out["metrics"]["1-shot_std"] == pytest.approx(np.std(runs))


def test_fewshot_normalises_features():
    # Class 1 is class 0 scaled by 100: indistinguishable after L2 normalisation.
    x = torch.tensor([[1.0, 0.2], [1.0, 0.21], [100.0, 20.0], [100.0, 21.0]])
    y = np.array([0, 0, 1, 1])
    acc = fewshot(x, y, x, y, shots=(2,), seeds=1)["metrics"]["2-shot_mean"]
    assert acc == 0.5


def test_linear_head_is_mae_style():
    head = linear_head(8, 3)
    bn, fc = head
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert fc.in_features == 8 and fc.out_features == 3 and torch.all(fc.bias == 0)


@pytest.mark.parametrize("optimizer", ["lars", "sgd", "adamw"])
def test_linear_probe_separable_is_perfect(optimizer):
    train_x, train_y = separable(seed=0)
    test_x, test_y = separable(n_per_class=10, seed=1)
    out = linear_probe(train_x, train_y, test_x, test_y, 4, epochs=30, batch_size=16,
                       warmup_epochs=2, optimizer=optimizer, blrs=[100.0 if optimizer == "lars" else 0.5])
    assert out["metrics"]["top1"] == 1.0 and out["metrics"]["top5"] is None


def test_linear_probe_sweep_picks_lr_on_held_out_train():
    train_x, train_y = separable(seed=0)
    test_x, test_y = separable(n_per_class=10, seed=1)
    # A vanishing lr leaves the head at its random init; the sweep must choose the useful one.
    out = linear_probe(train_x, train_y, test_x, test_y, 4, blrs=[1e-9, 1.0], epochs=20,
                       batch_size=16, warmup_epochs=2, optimizer="sgd", val_fraction=0.25)
    assert out["blr"] == 1.0 and [r["blr"] for r in out["sweep"]] == [1e-9, 1.0]
    assert out["sweep"][1]["val_top1"] == 1.0 > out["sweep"][0]["val_top1"]
    assert out["metrics"]["top1"] == 1.0


def test_train_linear_probe_rejects_unknown_optimizer():
    x, y = separable()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train_linear_probe(x, y, 4, optimizer="adagrad")
