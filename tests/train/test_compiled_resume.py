"""train.compile=true on a CPU: a compiled run resumed from its middle checkpoint ends with exactly
the uninterrupted compiled run's weights. Without deterministic kernels (rils.train.step.
compile_for_training) inductor's parallel atomic adds made the two differ. Compiling takes a while
on a CPU, so this runs the smallest preset for four steps, in this process (two threads or more:
with one, the atomic adds happen to be ordered and the test could not fail)."""
import torch

from rils.train.config import load_config
from rils.train.engine import train

from .helpers import TINY

ARGS = [*TINY, "train.max_steps=4", "train.checkpoint_every=2", "train.batch_size=8", "logging.tensorboard=false",
        "train.compile=true"]


def _weights(ckpt):
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_a_compiled_run_resumes_exactly(tmp_path, restore_determinism):
    full = train(load_config("demo", [*ARGS, "method=clip", f"output_dir={tmp_path / 'full'}"]))
    middle = tmp_path / "full" / "checkpoints" / "step_00000002.pt"
    resumed = train(load_config("demo", [*ARGS, "method=clip", f"output_dir={tmp_path / 'resumed'}",
                                         f"resume={middle}"]))
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
