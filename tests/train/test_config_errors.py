"""Bad config input exits with status 2 and a one-line message naming the key."""
import pytest

from rils.cli import main

from .helpers import rils_cmd, run


@pytest.mark.parametrize("overrides, key", [
    (["train.batch_sise=4"], "train.batch_sise"),             # unknown key
    (["bogus=1"], "bogus"),
    (["train.batch_size=abc"], "train.batch_size"),            # wrong type
    (["train.lr=[1, 2]"], "train.lr"),
    (["loss.mask_ratio=1.0"], "loss.mask_ratio"),              # outside (0, 1)
    (["loss.mask_ratio=0"], "loss.mask_ratio"),
    (["method=clip", "train.batch_size=1"], "train.batch_size"),   # contrastive needs 2 per rank
    (["model.preset=vit_x"], "model.preset"),
    (["method=byol"], "method"),
    (["train=3"], "train"),
    (["train.precision=fp8"], "train.precision"),
    (["train.compile_mode=fastest"], "train.compile_mode"),
])
def test_bad_overrides_exit_2_naming_the_key(overrides, key, capsys, tmp_path):
    code = main(["pretrain", "-c", "demo", f"output_dir={tmp_path}", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and key in err and "Traceback" not in err


@pytest.mark.parametrize("override, suggestion", [
    ("train.batchsize=4", "train.batch_size"),      # the example
    ("trian.batch_size=4", "train.batch_size"),     # a misspelt section
    ("data.worker=2", "data.workers"),
    ("lr=1e-3", "train.lr"),                        # a key without its section
    ("resume_override=[train.lrr]", "train.lr"),
])
def test_an_unknown_key_suggests_the_nearest_one(override, suggestion, capsys, tmp_path):
    """An unknown key is refused in one line that ends with the nearest known key ("did you mean
    train.batch_size?" for `train.batchsize=...`)."""
    assert main(["pretrain", "-c", "demo", f"output_dir={tmp_path}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(f"(did you mean {suggestion}?)"), err


def test_an_unknown_key_far_from_all_suggests_nothing(capsys, tmp_path):
    assert main(["pretrain", "-c", "demo", f"output_dir={tmp_path}", "bogus=1"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_mae_accepts_a_batch_of_one(tmp_path):
    from rils.train.config import load_config
    assert load_config("demo", ["method=mae", "train.batch_size=1"]).train.batch_size == 1


def test_unknown_key_in_a_yaml_recipe(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: rils\ntrain:\n  batchsize: 4\n")
    assert main(["pretrain", "-c", str(bad)]) == 2
    assert "train.batchsize" in capsys.readouterr().err


def test_process_exit_status_is_2():
    proc = run(rils_cmd("pretrain", "-c", "demo", "loss.mask_ratio=1.5"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["rils: error: loss.mask_ratio: must be in (0, 1), got 1.5"]
