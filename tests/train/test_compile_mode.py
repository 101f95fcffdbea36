"""train.compile_mode reaches torch.compile as its `mode` (the compile itself is stood in for: a CPU
compile takes minutes; tests/train/test_compiled_resume.py runs a real one)."""
import pytest
import torch

from rils.train import engine
from rils.train.config import load_config
from rils.train.step import COMPILE_MODES, compile_for_training

from .helpers import TINY


@pytest.mark.parametrize("mode, expected", [("default", None), ("reduce-overhead", "reduce-overhead"),
                                            ("max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs")])
def test_compile_for_training_passes_the_mode(monkeypatch, restore_determinism, mode, expected):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda net, mode=None: seen.append(mode) or net)
    net = torch.nn.Linear(2, 2)
    assert compile_for_training(net, torch.device("cpu"), mode) is net
    assert seen == [expected]


def test_an_unknown_mode_is_refused(restore_determinism):
    before = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ValueError, match="compile mode must be one of default, reduce-overhead"):
        compile_for_training(torch.nn.Linear(2, 2), torch.device("cpu"), "fastest")
    assert torch.are_deterministic_algorithms_enabled() == before   # refused before touching global state
    assert "reduce-overhead" in COMPILE_MODES


def test_the_engine_compiles_with_the_configured_mode(tmp_path, monkeypatch):
    modes = []

    def record(net, device, mode="default"):
        modes.append(mode)
        return net                       # train eagerly: what is checked is the call
    monkeypatch.setattr(engine, "compile_for_training", record)
    engine.train(load_config("demo", [*TINY, "method=clip", "train.batch_size=8", "train.max_steps=1",
                                      "logging.tensorboard=false", f"output_dir={tmp_path}",
                                      "train.compile=true", "train.compile_mode=reduce-overhead"]))
    assert modes == ["reduce-overhead"]
