"""The split backward of RILS and MAE+CLIP (PretrainMethod.split_backward): L_Contra's backward pass
runs before the masked branch is built. Same loss and gradients as one backward pass, less kept at once."""
import pytest
import torch

import rils
from rils.train.step import train_step

from activations import saved_activation_bytes
from test_methods import TINY, make_batch


def _method(name, **options):
    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method=name).double()
    return rils.create_method(name, model, **TINY, **options).double()


def _batch_with_matches(method):
    for seed in range(20):   # L_Recon reads images in C only: a batch where C is not empty
        batch = make_batch(method, seed=seed)
        batch["image"] = batch["image"].double()
        with torch.no_grad():
            if method(batch).get("matched_frac", 1) > 0:
                return batch
    raise AssertionError("C was empty for every batch: the test would prove nothing")


def _grads(method):
    return {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["rils", "rils_prototypes", "mae_clip"])
def test_split_backward_gives_the_loss_and_gradients_of_one_backward(name):
    method = _method(name)
    assert method.split_backward()
    batch = _batch_with_matches(method)
    whole = method(batch)
    whole["loss"].backward()
    expected = _grads(method)
    method.zero_grad(set_to_none=True)

    first, carry = method(batch, part=1)
    assert all(not v.requires_grad for v in carry.values())   # part 2 holds nothing of part 1's graph
    first.backward()
    outputs = method(batch, part=2, carry=carry)
    outputs["loss"].backward()
    assert list(outputs) == list(whole)
    for k in whole:
        assert torch.allclose(outputs[k], whole[k], rtol=1e-12, atol=1e-12), k
    got = _grads(method)
    assert got.keys() == expected.keys()
    for n in expected:
        assert torch.allclose(got[n], expected[n], rtol=1e-9, atol=1e-12), n
    assert expected["model.decoder.pred.weight"].abs().sum() > 0


def test_no_split_when_prototypes_train_the_text_tower():
    assert not _method("rils", detach_prototypes=False).split_backward()
    assert not _method("clip").split_backward() and not _method("mae").split_backward()


def test_each_part_keeps_much_less_than_the_whole_step():
    method = _method("rils")
    batch = _batch_with_matches(method)
    saved_bytes = lambda fn: saved_activation_bytes(fn, method)   # noqa: E731
    whole, _ = saved_bytes(lambda: method(batch))
    part1, (_, carry) = saved_bytes(lambda: method(batch, part=1))
    part2, _ = saved_bytes(lambda: method(batch, part=2, carry=carry))
    # part 1 is CLIP's step plus the targets; part 2 the masked branch, about a third of the rest
    assert part1 + part2 >= whole * 0.95
    assert max(part1, part2) < whole * 0.85


def test_train_step_splits_and_updates_as_one_backward(monkeypatch):
    def step(split):
        method = _method("rils")
        monkeypatch.setattr(type(method), "split_backward", lambda self: split)
        opt = torch.optim.SGD(method.parameters(), lr=0.1)
        batches = [_batch_with_matches(method)]
        calls = []
        forward = lambda b, **kw: calls.append(kw.get("part", 0)) or method(b, **kw)   # noqa: E731
        result = train_step(method, method, opt, batches, device=torch.device("cpu"), precision="fp32",
                            forward=forward)
        return result, {n: p.detach().clone() for n, p in method.named_parameters()}, calls

    (r1, w1, c1), (r2, w2, c2) = step(False), step(True)
    assert c1 == [0] and c2 == [1, 2]
    assert r1.names == r2.names and torch.allclose(r1.values, r2.values, rtol=1e-12)
    for n in w1:
        assert torch.allclose(w1[n], w2[n], rtol=1e-9, atol=1e-12), n
