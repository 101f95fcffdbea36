"""`loss.contrastive_gather`: `full` is the exact gradient of L_Contra over the global batch; `local`
is the RILS authors' multi-GPU gradient (SLIP's `all_gather_batch`: no gathered row carries
gradient, the local one included), checked against an independent computation of that one-sided
gradient with 2 ranks under torchrun."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rils import MethodOptions, create_method
from rils.train.config import ConfigError, load_config

from .gather_worker import fixed_batch, fresh_model
from .helpers import run

RANKS = 2


def _reference_grads(one_sided: bool) -> dict:
    """The gradient DDP averages over RANKS ranks, each holding its rows of fixed_batch(), written out
    by hand in one process: rank r's loss is (CE(σ z^I_r · Z^T) + CE(σ z^T_r · Z^I)) / 2 over its own
    rows against the whole batch; with `one_sided` the whole-batch Z^I and Z^T are constants (SLIP),
    else they carry gradient (then the mean over ranks is the one-device loss on the whole batch)."""
    model = fresh_model()
    batch = fixed_batch()
    z_img = F.normalize(model.encode_image(batch["image"]), dim=-1)
    z_txt = F.normalize(model.encode_text(batch["text"]), dim=-1)
    all_img, all_txt = (z_img.detach(), z_txt.detach()) if one_sided else (z_img, z_txt)
    scale = model.logit_scale_exp()
    n = z_img.shape[0] // RANKS
    losses = []
    for r in range(RANKS):
        rows, labels = slice(r * n, (r + 1) * n), torch.arange(n) + r * n
        losses.append((F.cross_entropy(scale * z_img[rows] @ all_txt.T, labels)
                       + F.cross_entropy(scale * z_txt[rows] @ all_img.T, labels)) / 2)
    (sum(losses) / RANKS).backward()
    return {f"model.{k}": p.grad for k, p in model.named_parameters() if p.grad is not None}


def _max_rel_err(got: dict, want: dict) -> tuple[str, float]:
    """The key where `got` is furthest from `want`, measured against the tensor's scale."""
    assert got.keys() == want.keys() and len(want) > 10
    errs = {k: float((got[k] - want[k]).abs().max() / (want[k].abs().max() + 1e-12)) for k in want}
    worst = max(errs, key=errs.get)
    return worst, errs[worst]


def test_two_ranks_local_is_the_authors_one_sided_gradient_and_full_the_exact_one(tmp_path):
    """2 ranks x 4 under torchrun: `local` gives the one-sided gradient written out by hand, `full` the
    gradient of one device on the whole batch, and the two differ."""
    worker = str(Path(__file__).with_name("gather_worker.py"))
    out = run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={RANKS}",
               worker, str(tmp_path / "grads.pt")])
    assert out.returncode == 0, out.stderr[-3000:]
    got = torch.load(tmp_path / "grads.pt")
    one_sided, exact = _reference_grads(one_sided=True), _reference_grads(one_sided=False)
    # fp32 sums in another order: equal up to rounding
    assert _max_rel_err(got["local"], one_sided)[1] < 1e-4
    assert _max_rel_err(got["full"], exact)[1] < 1e-4
    # and the two differ by far more than rounding, so the comparison above tells them apart
    trunk = "model.visual.trunk.blocks.0.attn.qkv.weight"
    diff = (one_sided[trunk] - exact[trunk]).abs().max() / exact[trunk].abs().max()
    assert diff > 0.05, diff


def test_one_process_local_takes_the_full_gradient_as_slip_does():
    """With one process SLIP's all_gather_batch returns the tensors themselves: nothing is cut."""
    batch = fixed_batch()
    grads = {}
    for mode in ("local", "full"):
        method = create_method("clip", fresh_model(), MethodOptions(contrastive_gather=mode))
        method(batch)["loss"].backward()
        grads[mode] = {k: p.grad for k, p in method.named_parameters() if p.grad is not None}
    assert all(torch.equal(grads["local"][k], grads["full"][k]) for k in grads["full"])


def test_contrastive_gather_is_checked():
    """`full` is the default; anything but full or local is a one-line ConfigError naming the key, and
    a ValueError from the Python API."""
    assert load_config("demo").loss.contrastive_gather == "full"
    assert load_config("demo", ["loss.contrastive_gather=local"]).loss.contrastive_gather == "local"
    with pytest.raises(ConfigError, match=r"loss.contrastive_gather: must be full or local, got 'both'"):
        load_config("demo", ["loss.contrastive_gather=both"])
    with pytest.raises(ValueError, match="contrastive_gather must be full or local, got 'both'"):
        create_method("clip", fresh_model(), contrastive_gather="both")
