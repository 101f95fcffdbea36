"""train_step leaves its outcome on the device: no host read (`.item()`, `.tolist()`, `bool()` or
`float()` of a tensor) happens inside a step with the fused AdamW and no loss scaler, so on a GPU the
host can queue the next step while this one runs. A non-finite step is then dropped on the device
(the fused kernel's found_inf), leaving weights and optimiser state exactly as they were."""
import torch

import rils
from rils.model import text
from rils.train.optim import adamw, param_groups
from rils.train.step import train_step

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


def _setup():
    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method="rils")
    method = rils.create_method("rils", model, num_prototypes=16)
    tok = rils.get_tokenizer("vit_nano8_32")
    batch = {"image": torch.randn(4, 3, 32, 32), "text": tok(["a red circle", "a blue star", "a tan moon", "a gray ring"])}
    return method, adamw(param_groups(method, 0.05), lr=1e-3), batch


def _count_host_reads(monkeypatch):
    calls = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: (calls.append(_n), _o(self, *a, **k))[1])
    return calls


def test_a_step_reads_nothing_back_from_the_device(monkeypatch):
    method, opt, batch = _setup()
    # On a CPU the text tower reads the batch's longest caption length (free there); off a CPU it does
    # not (rils.model.text.used_length): the step here runs that function as it runs on a GPU.
    monkeypatch.setattr(text, "used_length", lambda eot, length, _real=text.used_length: _real(eot.to("meta"), length))
    calls = _count_host_reads(monkeypatch)
    result = train_step(method, method, opt, [batch], device=torch.device("cpu"), precision="fp32", grad_clip=1.0)
    assert calls == []
    monkeypatch.undo()
    sums, grad_norm, skipped = result.read()
    assert not skipped and set(sums) >= {"loss", "clip_loss", "recon_loss"} and grad_norm > 0


def test_a_nonfinite_step_is_dropped_on_the_device(monkeypatch):
    method, opt, batch = _setup()
    train_step(method, method, opt, [batch], device=torch.device("cpu"), precision="fp32")   # optimiser state exists
    weights = {k: v.clone() for k, v in method.state_dict().items()}
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
    with torch.no_grad():
        method.model.visual.head.proj.weight[0, 0] = float("nan")     # NaN loss and gradients
    weights["model.visual.head.proj.weight"][0, 0] = float("nan")
    result = train_step(method, method, opt, [batch], device=torch.device("cpu"), precision="fp32")
    assert result.skipped
    after = method.state_dict()
    assert all(torch.equal(after[k].nan_to_num(), v.nan_to_num()) for k, v in weights.items())
    assert all(torch.equal(opt.state[p][k], v) for p in opt.state for k, v in state[id(p)].items())
