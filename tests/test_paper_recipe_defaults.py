"""Issue 13: the paper recipe does not clip gradients (clipping stays available), and the new
loss.detach_prototypes key documents itself in `rils pretrain --help`."""
from rils.train.config import TrainConfig, config_reference, load_config


def test_paper_recipe_does_not_clip_but_clipping_stays_available():
    assert load_config("paper_b16", ["data.path=x.tar"]).train.grad_clip == 0.0
    assert load_config("rils", ["data.path=x.tar"]).train.grad_clip == 0.0           # the method aliases are paper_b16
    assert load_config("paper_b16", ["data.path=x.tar", "train.grad_clip=1.0"]).train.grad_clip == 1.0
    assert TrainConfig().grad_clip == 1.0                        # demo/compare keep their behaviour
    assert load_config("demo").train.grad_clip == 1.0


def test_detach_prototypes_is_a_documented_loss_key():
    rows = {row[0]: row for row in config_reference()}
    row = rows["loss.detach_prototypes"]
    assert "True" in row[2] or "true" in row[2].lower()
    assert "stop-gradient" in row[3]
    assert load_config("paper_b16", ["data.path=x.tar", "loss.detach_prototypes=false"]).loss.detach_prototypes is False


def test_two_stage_recipes_are_the_paper_recipe_second_stage(tmp_path):
    import pytest

    from rils.train.config import ConfigError

    first = tmp_path / "stage1.pt"
    first.write_bytes(b"")   # only its existence is checked when the config loads
    lit = load_config("mim_to_lit", ["data.path=x.tar", f"init_from={first}"])
    assert (lit.method, lit.model.lock_image, lit.output_dir) == ("clip", True, "runs/mim_to_lit")
    assert lit.train.grad_clip == 0.0 and lit.model.preset == "vit_b16"          # paper_b16 underneath
    full = load_config("mim_to_clip", ["data.path=x.tar", f"init_from={first}"])
    assert (full.method, full.model.lock_image) == ("clip", False)
    guided = load_config("clip_to_mim", ["data.path=x.tar", f"model.teacher={first}"])
    assert guided.method == "clip_target_mim"
    with pytest.raises(ConfigError, match=r"mim_to_lit is the second stage .*init_from=runs/mae/checkpoints/latest.pt"):
        load_config("mim_to_lit", ["data.path=x.tar"])
    with pytest.raises(ConfigError, match=r"clip_to_mim .*model.teacher=runs/clip/checkpoints/latest.pt"):
        load_config("clip_to_mim", ["data.path=x.tar"])
