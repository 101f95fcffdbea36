"""The dense fine-tuning loop: its schedules are MMSeg's and ViTDet's, a killed run resumes to the
same weights as an uninterrupted one, and a work folder is never silently reused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rils.eval.dense.loop import StreamSampler, build_optimizer, finetune, warmup_poly, warmup_step


def test_warmup_poly_is_mmseg_linear_then_poly():
    """LinearLR from 1e-6 over the warm-up, then poly (power 1) down to 0 at the last step."""
    f = warmup_poly(10, 110)
    assert f(0) == pytest.approx(1e-6)
    assert f(5) == pytest.approx(1e-6 + (1 - 1e-6) * 0.5)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0)


def test_warmup_step_is_vitdet_multistep():
    """ViTDet's 184,375-iteration run: ×0.1 at 163,889 and again at 177,546, warm-up from 0.001."""
    f = warmup_step(250, 184375)
    assert f(0) == pytest.approx(0.001)
    assert f(250) == pytest.approx(1.0)
    assert f(163_800) == pytest.approx(1.0)
    assert f(164_000) == pytest.approx(0.1)
    assert f(180_000) == pytest.approx(0.01)


def test_stream_sampler_ranks_split_the_global_batch():
    """Two ranks' batches at a step are the two halves of the one-rank global batch of twice the size."""
    one = StreamSampler(10, 4, steps=5, start=0, seed=3)
    ranks = []
    for r in range(2):
        s = StreamSampler(10, 2, steps=5, start=0, seed=3)
        s.world, s.rank = 2, r
        ranks.append(list(s))
    for step, batch in enumerate(one):
        assert ranks[0][step] + ranks[1][step] == batch
    resumed = StreamSampler(10, 4, steps=5, start=3, seed=3)
    assert list(resumed) == list(one)[3:]


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(x)


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=g)
    return torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def _loss(model, batch, device):
    x, y = batch
    return ((model(x) - y) ** 2).mean(), {}


def _run(work, steps=6, resume=False, loss_fn=_loss, settings=None):
    model = _Tiny()
    opt = build_optimizer(model, lr=0.1, weight_decay=0.0, layer_decay=1.0)
    out = finetune(model, _data(), loss_fn=loss_fn, optimizer=opt, lr_factor=warmup_poly(2, steps),
                   steps=steps, batch_size=4, work_dir=work, checkpoint_every=3, resume=resume,
                   progress=False, settings=settings or {"lr": 0.1})
    return model, out


def test_a_killed_fine_tune_resumes_to_the_uninterrupted_weights(tmp_path):
    """Killed after its step-3 checkpoint, the run resumes at step 3 and ends with the same weights."""
    whole, _ = _run(tmp_path / "whole")
    calls = {"n": 0}

    def dies_at_step_4(model, batch, device):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return _loss(model, batch, device)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "killed", loss_fn=dies_at_step_4)
    resumed, out = _run(tmp_path / "killed", resume=True)
    assert out["resumed_from"] == 3
    torch.testing.assert_close(resumed.fc.weight, whole.fc.weight, rtol=0, atol=0)
    assert [h["step"] for h in out["history"]][-1] == 6


def test_a_work_folder_is_not_reused_silently(tmp_path):
    """Without --resume an existing fine-tune is refused; with other settings, resume is refused."""
    _run(tmp_path)
    with pytest.raises(ValueError, match="pass --resume"):
        _run(tmp_path)
    with pytest.raises(ValueError, match=r"lr: 0.1 -> 0.2"):
        _run(tmp_path, resume=True, settings={"lr": 0.2})
