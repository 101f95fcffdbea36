"""`train.compile=true` hands train_step a compiled module as `forward`. torch.compile's wrapper has
no truth value (it forwards len() to the model, which has none), so the step must not test it with
`or`: this stand-in behaves the same way without the minutes a CPU compile takes."""
import torch

from rils.bench import _batch
from rils.factory import create_model
from rils.methods import create_method
from rils.methods.base import MethodOptions
from rils.train.optim import adamw, param_groups
from rils.train.step import train_step


class _LikeCompiled:
    """Callable like torch.compile's OptimizedModule, and like it, len() raises TypeError."""

    def __init__(self, module):
        self.module, self.calls = module, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)

    def __len__(self):
        raise TypeError(f"{type(self.module).__name__} does not support len()")


def test_train_step_calls_a_compiled_forward():
    torch.manual_seed(0)
    method = create_method("rils", create_model("vit_nano8_32", method="rils"), MethodOptions()).train()
    forward = _LikeCompiled(method)
    batch = _batch(method.model.preset, 4, torch.device("cpu"), views=False)
    result = train_step(method, method, adamw(param_groups(method, 0.05), lr=1e-4), [batch],
                        device=torch.device("cpu"), precision="fp32", forward=forward)
    assert forward.calls == 2   # RILS runs as two parts (its split backward), both through `forward`
    assert not result.skipped and torch.isfinite(result.grad_norm)
