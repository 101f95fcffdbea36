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
