"""model.grad_checkpointing / model.masked_grad_checkpointing reach the model the engine trains."""
import pytest

from rils.model.dual_encoder import DualEncoder
from rils.train.config import load_config
from rils.train.engine import train

from .helpers import TINY


@pytest.mark.parametrize("flags,expected", [([], []), (["model.masked_grad_checkpointing=true"], [(False, True)]),
                                            (["model.grad_checkpointing=true"], [(True, True)])])
def test_checkpointing_flags_reach_the_model(tmp_path, monkeypatch, flags, expected):
    calls = []
    real = DualEncoder.set_grad_checkpointing

    def record(self, enable=True, masked=None):
        calls.append((enable, masked))
        real(self, enable, masked)
    monkeypatch.setattr(DualEncoder, "set_grad_checkpointing", record)
    train(load_config("demo", [*TINY, "method=rils", "train.batch_size=8", "train.max_steps=1",
                               "logging.tensorboard=false", f"output_dir={tmp_path}", *flags]))
    assert calls == expected
