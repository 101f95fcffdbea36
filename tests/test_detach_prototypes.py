"""RILS's prototypes z^T (Eq. 8) are detached by default, as the official code's plain
all_gather leaves them; `loss.detach_prototypes=false` lets L_recon train the text tower."""
import pytest
import torch

import rils
from rils.methods.base import MethodOptions

from test_methods import TINY, make_batch


def _recon_only_grads(name, **options):
    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method=name)
    method = rils.create_method(name, model, lambda_contra=0.0, lambda_recon=1.0, **TINY, **options)
    for seed in range(20):   # L_recon flows only through images in C: pick a batch where C is not empty
        out = method(make_batch(method, seed=seed))
        if out["matched_frac"] > 0:
            break
    assert out["matched_frac"] > 0
    method.zero_grad(set_to_none=True)
    out["loss"].backward()
    text = [p for n, p in method.named_parameters() if n.startswith("model.text.")]
    assert text, "the text tower lives under model.text"
    text_grad = sum(float(p.grad.abs().sum()) for p in text if p.grad is not None)
    return method, text_grad


def test_default_is_detached():
    assert MethodOptions().detach_prototypes is True


def test_detached_prototypes_leave_text_tower_untrained():
    _, text_grad = _recon_only_grads("rils")
    assert text_grad == 0.0


def test_attached_prototypes_train_text_tower():
    _, text_grad = _recon_only_grads("rils", detach_prototypes=False)
    assert text_grad > 0.0


@pytest.mark.parametrize("detach", [True, False])
def test_learned_prototypes_still_train(detach):
    method, _ = _recon_only_grads("rils_prototypes", detach_prototypes=detach)
    g = method.learned_prototypes.grad
    assert g is not None and float(g.abs().sum()) > 0
