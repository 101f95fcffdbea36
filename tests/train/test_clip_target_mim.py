"""CLIP→MIM (Table 9): a frozen CLIP teacher's projected patch features are the targets."""
import pytest
import torch

from rils.train.config import ConfigError, load_config
from rils.train.engine import train

from .helpers import TINY

SMALL = [*TINY, "train.batch_size=8", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip")
    return train(load_config("demo", [*SMALL, "method=clip", "train.max_steps=2", f"output_dir={out}"]))


def test_teacher_loaded_frozen_unchanged_and_without_optimiser_state(clip_ckpt, tmp_path):
    args = [*SMALL, "method=clip_target_mim", f"model.teacher={clip_ckpt}", f"output_dir={tmp_path}"]
    ckpt = torch.load(train(load_config("demo", [*args, "train.max_steps=3"])), weights_only=True)
    source = torch.load(clip_ckpt, weights_only=True)["state_dict"]
    teacher = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("teacher.")}
    assert teacher and all(torch.equal(v, source["model.visual." + k[len("teacher."):]]) for k, v in teacher.items())
    # one optimiser state per trainable tensor (pos_embed is fixed): none for the teacher
    trainable = [k for k in ckpt["state_dict"] if not k.startswith("teacher.") and "pos_embed" not in k]
    assert len(ckpt["optimizer"]["state"]) == len(trainable)
    assert not any(k.startswith("model.text") for k in ckpt["state_dict"])   # the student is MIM only

    # resumed without the teacher path: the teacher comes back from the checkpoint
    ckpt = torch.load(train(load_config("demo", [*SMALL, "method=clip_target_mim", f"output_dir={tmp_path}",
                                                 "train.max_steps=4", "resume=latest"])), weights_only=True)
    assert ckpt["step"] == 4 and all(torch.equal(ckpt["state_dict"][k], v) for k, v in teacher.items())


def test_teacher_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="model.teacher: method clip_target_mim needs a teacher"):
        load_config("demo", ["method=clip_target_mim"])
    with pytest.raises(ConfigError, match="model.teacher: not found"):
        load_config("demo", ["method=clip_target_mim", f"model.teacher={tmp_path / 'nope.pt'}"])
    mae = train(load_config("demo", [*SMALL, "method=mae", "train.max_steps=1", f"output_dir={tmp_path / 'mae'}"]))
    cfg = load_config("demo", [*SMALL, "method=clip_target_mim", f"model.teacher={mae}", f"output_dir={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="has no image projection θ") as exc:
        train(cfg)
    assert "\n" not in str(exc.value)
