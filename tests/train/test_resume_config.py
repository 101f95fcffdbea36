"""A resumed run never half-applies a changed configuration: keys that define the run are refused
with one line naming each (exit 2) unless listed in `resume_override`, in which case they take effect
for real and are recorded; harmless keys apply with a log line; config.yaml stays the original."""
import json

import pytest
import torch
import yaml

from rils.train.config import ConfigError, load_config
from rils.train.engine import train

SMALL = ["model.preset=vit_nano8_32", "method=clip", "train.precision=fp32", "data.workers=0",
         "data.num_samples=64", "train.batch_size=8", "train.max_steps=3", "train.warmup_steps=1",
         "train.lr=1e-3", "train.lr_base_batch=8", "train.log_every=1", "train.device=cpu",
         "train.checkpoint_every=3"]


def _train(out, *overrides):
    return train(load_config("demo", [*SMALL, f"output_dir={out}", *overrides]))


def _lrs(out):
    return {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "lr" in r}


@pytest.fixture
def run3(tmp_path):
    _train(tmp_path)
    return tmp_path


def test_a_changed_lr_is_refused_naming_the_key(run3):
    """train.lr 1e-3 -> 1e-2 on resume: ConfigError naming the key and both values; nothing written."""
    before = (run3 / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.001 -> 0\.01.*resume_override=\[train\.lr\]"):
        _train(run3, "resume=latest", "train.lr=1e-2", "train.max_steps=6")
    assert (run3 / "config.yaml").read_text() == before
    assert not (run3 / "config_history.yaml").exists()


def test_a_changed_batch_is_refused(run3):
    """train.batch_size 8 -> 4 on resume is refused too (it moves the lr, warm-up and epochs)."""
    with pytest.raises(ConfigError, match=r"train\.batch_size: 8 -> 4"):
        _train(run3, "resume=latest", "train.batch_size=4", "train.max_steps=6")


def test_an_override_is_applied_for_real_and_recorded(run3, tmp_path_factory):
    """With resume_override=[train.lr] the resumed steps follow the new lr's schedule exactly (the
    same lrs as a run started at 1e-2), config.yaml keeps 1e-3 and config_history.yaml records it."""
    _train(run3, "resume=latest", "train.lr=1e-2", "train.max_steps=6", "resume_override=[train.lr]")
    fresh = tmp_path_factory.mktemp("fresh")
    _train(fresh, "train.lr=1e-2", "train.max_steps=6")
    resumed, wanted = _lrs(run3), _lrs(fresh)
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(wanted[step], rel=1e-12)
    assert yaml.safe_load((run3 / "config.yaml").read_text())["train"]["lr"] == 1e-3
    history = yaml.safe_load((run3 / "config_history.yaml").read_text())
    assert history[0]["resumed_at_step"] == 3
    assert history[0]["overridden"] == {"train.lr": {"from": 1e-3, "to": 1e-2}}
    assert history[0]["changed"] == {"train.max_steps": {"from": 3, "to": 6}}
    ckpt = torch.load(run3 / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["initial_lr"] == 1e-2


def test_extending_the_run_is_harmless(run3, capsys):
    """A longer max_steps and another log cadence resume with a log line and no override."""
    _train(run3, "resume=latest", "train.max_steps=5", "train.log_every=2")
    assert "resume: train.max_steps 3 -> 5, train.log_every 1 -> 2" in capsys.readouterr().err


def test_an_unknown_override_key_is_a_config_error():
    """A typo in resume_override names the key."""
    with pytest.raises(ConfigError, match="resume_override: unknown config key 'train.lrr'"):
        load_config("demo", [*SMALL, "resume_override=[train.lrr]"])


def test_a_run_older_than_model_quick_gelu_resumes_as_the_gelu_run_it_was():
    """A checkpoint's config without `model.quick_gelu` was trained with a GELU text tower: resuming it
    under today's QuickGELU default is refused naming the key (the weights would compute another
    function), and `model.quick_gelu=false` resumes it as it was."""
    from rils.train.resume_check import check_resume

    old = load_config("demo", SMALL).to_dict()
    del old["model"]["quick_gelu"]
    with pytest.raises(ConfigError, match=r"model\.quick_gelu: False -> True.*resume_override=\[model\.quick_gelu\]"):
        check_resume(old, load_config("demo", SMALL).to_dict(), old_world=1, world=1, overrides=[])
    same = load_config("demo", [*SMALL, "model.quick_gelu=false"]).to_dict()
    assert check_resume(old, same, old_world=1, world=1, overrides=[]) == ({}, {})
