"""Few-shot features centred and L2-normalised as MSN does; C swept on held-out shots."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rils.eval import fewshot
from rils.eval.fewshot import MSN_C, choose_C, msn_preprocess


def test_msn_preprocess_centres_then_normalises_each_row():
    x = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 13.0]])
    out = msn_preprocess(x)
    assert np.allclose(out.mean(axis=1), 0.0, atol=1e-6)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.allclose(out[0], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2), atol=1e-6)


def test_row_centring_removes_a_shared_offset():
    # Two classes differ only by the sign of a small signal on top of a large constant offset:
    # plain L2 normalisation leaves them almost identical (and C=1 underfits); centred they separate.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    signal = np.where(y[:, None] == 0, 1.0, -1.0) * np.array([1.0, -1.0, 0.0, 0.0])
    x = torch.tensor(100.0 + signal + 0.05 * rng.standard_normal((40, 4)), dtype=torch.float32)
    out = fewshot(x, y, x, y, shots=(5,), seeds=2)
    assert out["metrics"]["5-shot_mean"] == 1.0


def test_one_shot_uses_msn_C_and_more_shots_sweep():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 12)
    x = torch.tensor(3.0 * np.eye(3, 6)[y] + rng.standard_normal((36, 6)), dtype=torch.float32)
    out = fewshot(x, y, x, y, shots=(1, 5), seeds=2, C=(0.01, 1.0, MSN_C))
    assert out["C_chosen"]["1-shot"] == [MSN_C, MSN_C]
    assert all(c in (0.01, 1.0, MSN_C) for c in out["C_chosen"]["5-shot"])
    single = fewshot(x, y, x, y, shots=(5,), seeds=1, C=2.5)
    assert single["C_chosen"]["5-shot"] == [2.5]


def test_choose_C_prefers_the_C_that_generalises_on_held_out_shots():
    # Held-out accuracy picks among Cs; a C so small that every prediction is the same class loses.
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(4), 10)
    x = msn_preprocess(4.0 * np.eye(4, 16)[y] + rng.standard_normal((40, 16)))
    chosen = choose_C(x, y, (1e-6, MSN_C), seed=0)
    assert chosen == MSN_C
    assert choose_C(x, y, (7.0,)) == 7.0
    with pytest.raises(ValueError):
        fewshot(x, y, x, y, shots=(11,), seeds=1)
