"""precision=auto follows the hardware; an explicit bf16 where it is emulated warns once."""
import warnings

import pytest
import torch

from rils import precision as P


@pytest.fixture
def no_native_bf16(monkeypatch):
    """A CPU like most laptops: AVX2, no AVX-512-BF16/AMX (the capability probe says so)."""
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(P, "_warned", set())


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(P, "_warned", set())


def test_auto_is_fp32_on_a_cpu_without_native_bf16(no_native_bf16):
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # auto never warns
        resolved, why = P.resolve_precision("auto", "cpu")
    assert resolved == "fp32" and "no native bf16" in why


def test_auto_is_bf16_where_the_cpu_has_it(native_bf16):
    assert P.resolve_precision("auto", "cpu") == ("bf16", "auto: this CPU computes bf16 natively")


def test_explicit_bf16_on_an_emulating_cpu_warns_once(no_native_bf16):
    with pytest.warns(P.EmulatedBf16Warning, match="emulated on this CPU.*use precision=auto"):
        assert P.resolve_precision("bf16", "cpu")[0] == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.resolve_precision("bf16", "cpu")       # the second time: silent


def test_autocast_follows_the_resolved_precision(no_native_bf16):
    x = torch.randn(4, 4)
    with P.autocast("cpu", "auto"):
        assert (x @ x).dtype == torch.float32
    with P.autocast("cpu", "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve_precision("fp8", "cpu")


def test_pretrain_without_a_precision_logs_fp32_and_why(no_native_bf16, tmp_path, capsys):
    from rils.train.config import load_config
    from rils.train.engine import train

    cfg = load_config("demo", ["model.preset=vit_nano8_32", "data.workers=0", "data.num_samples=32",
                               "train.batch_size=8", "train.max_steps=2", "train.warmup_steps=1",
                               f"output_dir={tmp_path}"])
    assert cfg.train.precision == "auto"
    train(cfg)
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert "precision fp32 (auto: this CPU has no native bf16" in first
    assert "warning" not in err                  # auto chose fp32: nothing to warn about
    assert "ran as fp32" in (tmp_path / "config.yaml").read_text().splitlines()[0]


def test_tf32_is_fp32_on_a_cpu():
    assert P.resolve_precision("tf32", "cpu") == ("fp32", "tf32 asked for: a CUDA matmul mode; fp32 on this CPU")


def test_fp16_trains_with_a_gradient_scaler_that_the_checkpoint_keeps(tmp_path):
    from rils.train.config import load_config
    from rils.train.engine import train

    cfg = load_config("demo", ["model.preset=vit_nano8_32", "train.precision=fp16", "data.workers=0",
                               "data.num_samples=32", "train.batch_size=8", "train.max_steps=3",
                               f"output_dir={tmp_path}"])
    ckpt = torch.load(train(cfg), weights_only=True)
    assert ckpt["precision"] == "fp16" and ckpt["step"] == 3
    assert ckpt["scaler"]["scale"] > 0 and "_growth_tracker" in ckpt["scaler"]
    with P.autocast("cpu", "fp16"):
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.float16
