"""Gradient accumulation with the whole accumulated batch as negatives (train.accum_negatives):
accum_steps=4 x batch b trains exactly like accum_steps=1 x batch 4b on the same samples."""
import sys
from pathlib import Path

import pytest
import torch

from .accum_worker import build, compare, global_batch, one_step, seed_with_matches
from .helpers import run

EXACT = ["clip", "rils", "mae", "mae_clip", "rils_prototypes", "clip_target_mim"]


def assert_same_step(result, method):
    (m_acc, g_acc), (m_one, g_one), (m_plain, _) = result["accum"], result["one"], result["plain"]
    assert m_acc.keys() == m_one.keys()
    for k in m_one:
        assert m_acc[k] == pytest.approx(m_one[k], rel=1e-4, abs=1e-6), (k, m_acc[k], m_one[k])
    assert g_acc.keys() == g_one.keys() and len(g_one) > 10
    for k in g_one:
        # fp32 sums in another order: equal up to rounding, measured against the tensor's scale
        err = (g_acc[k] - g_one[k]).abs().max()
        assert err <= 1e-4 * g_one[k].abs().max() + 1e-7, (k, err)
    if "clip_loss" in m_one:   # the test can tell: each micro-batch alone has other negatives
        assert m_plain["clip_loss"] != pytest.approx(m_one["clip_loss"], rel=1e-3)
    if method.startswith("rils"):
        assert m_one["matched_frac"] > 0 and m_one["recon_loss"] > 0, "C was empty: the test proves nothing"
        assert g_one["model.decoder.pred.weight"].abs().sum() > 0


@pytest.mark.parametrize("method", EXACT)
def test_accumulated_batch_equals_one_big_batch(method):
    seed = seed_with_matches(method, 16) if method.startswith("rils") else 0
    assert_same_step(compare(method, per_rank=16, accum=4, seed=seed), method)


@pytest.mark.parametrize("method", ["slip", "simclr"])
def test_batchnorm_heads(method):
    """The SimCLR head's BatchNorm normalises over the micro-batch (both views): with its batch
    statistics out of the way (eval mode) the step equals the big batch; in train mode the running
    statistics are updated once per micro-batch, as with plain accumulation, not by the first pass."""
    m = build(method)
    m.image_mlp.eval()
    batch = global_batch(16, views=True)
    (m_acc, g_acc), (m_one, g_one) = one_step(m, m, batch, 4), one_step(m, m, batch, 1)
    assert m_acc["ssl_loss"] == pytest.approx(m_one["ssl_loss"], rel=1e-4)
    for k in g_one:
        assert (g_acc[k] - g_one[k]).abs().max() <= 1e-4 * g_one[k].abs().max() + 1e-7, k

    pooled, plain = build(method), build(method)
    one_step(pooled, pooled, batch, 4)
    one_step(plain, plain, batch, 4, accum_negatives=False)
    stats = {k: v for k, v in pooled.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats and stats["image_mlp.1.num_batches_tracked"] == 4
    for k, v in stats.items():
        assert torch.allclose(v, plain.state_dict()[k], rtol=1e-5, atol=1e-7), k


def test_unequal_micro_batches_average_by_sample():
    """A last micro-batch smaller than the others (rils bench splits like this) still weighs each
    sample once: the per-sample terms are normalised over the accumulated batch."""
    method = build("mae")
    batch = global_batch(10, views=False)
    opt = torch.optim.SGD(method.parameters(), lr=0.0)
    from rils.train.step import train_step
    micro = [{k: v[:4] for k, v in batch.items()}, {k: v[4:8] for k, v in batch.items()},
             {k: v[8:] for k, v in batch.items()}]
    train_step(method, method, opt, micro, device=torch.device("cpu"), precision="fp32")
    g_acc = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
    _, g_one = one_step(method, method, batch, 1)
    for k in g_one:
        assert (g_acc[k] - g_one[k]).abs().max() <= 1e-4 * g_one[k].abs().max() + 1e-7, k


def test_the_engine_runs_both_ways(tmp_path):
    from rils.train.config import load_config
    from rils.train.engine import train
    for flag in ("true", "false"):
        cfg = load_config("demo", ["method=rils", "model.preset=vit_nano8_32", "train.precision=fp32",
                                   "data.workers=0", "data.num_samples=16", "train.batch_size=4",
                                   "train.accum_steps=2", f"train.accum_negatives={flag}", "train.max_steps=1",
                                   f"output_dir={tmp_path / flag}"])
        assert cfg.train.accum_negatives == (flag == "true")
        assert torch.load(train(cfg), weights_only=True)["step"] == 1


@pytest.mark.parametrize("method", ["clip", "rils"])
def test_two_ranks(method, tmp_path):
    """torchrun, 2 ranks (gloo): each rank caches its own micro-batches, the gather across ranks
    happens on the pooled features, DDP's no_sync on all but the last micro-batch."""
    worker = str(Path(__file__).with_name("accum_worker.py"))
    out = tmp_path / "r.pt"
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                worker, str(out), method, "16", "4", str(seed_with_matches(method, 32))])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_step(torch.load(out), method)


def test_cached_rows_equal_fresh_rows_under_stochastic_depth():
    """The first pass restores the RNG state before each micro-batch's second pass, so a random
    forward (stochastic depth here) gives the cached rows and the fresh ones the same draws."""
    import rils
    from rils.train.step import train_step
    torch.manual_seed(0)
    method = rils.create_method("clip", rils.create_model("vit_nano8_32", method="clip", drop_path_rate=0.5))
    diffs, loss_from = [], method.loss_from

    def spy(batch, feats, pool=None):
        diffs.append(max((feats[k] - pool.cached[k][pool.index]).abs().max().item() for k in method.pooled))
        return loss_from(batch, feats, pool)

    method.loss_from = spy
    batch = global_batch(8, views=False)
    micro = [{k: v[i:i + 2] for k, v in batch.items()} for i in range(0, 8, 2)]
    train_step(method, method, torch.optim.SGD(method.parameters(), lr=0.0), micro,
               device=torch.device("cpu"), precision="fp32")
    assert diffs == [0.0] * 4
