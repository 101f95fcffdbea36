"""The paper recipe does not clip gradients (clipping stays available), and the
loss.detach_prototypes key documents itself in `rils pretrain --help`. Where the paper is
silent, the paper recipe is the authors' trainer (SLIP's main.py): AdamW eps 1e-8, a per-step linear
warm-up from 1e-6 and a cosine to 1e-5, step for step SLIP's `cosine_scheduler`."""
import json

import numpy as np
import pytest
import torch
import yaml

from rils.train.config import TrainConfig, config_reference, load_config
from rils.train.optim import warmup_cosine


def slip_cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    """SLIP's utils.cosine_scheduler (github.com/facebookresearch/SLIP, utils.py), copied as released."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


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


def test_paper_recipe_takes_the_authors_trainer_where_the_paper_is_silent(tmp_path):
    """`-c paper_b16` (and the method aliases) resolves eps 1e-8, warm-up start 1e-6, min_lr 1e-5 beside
    the paper's lr 5e-4 at batch 4096, weight decay 0.5, betas and 1 warm-up epoch; the other recipes
    keep the trainer's defaults (eps 1e-6, from 0, to 0)."""
    for recipe in ("paper_b16", "rils", "clip"):
        t = load_config(recipe, ["data.path=x.tar"]).train
        assert (t.eps, t.warmup_start_lr, t.min_lr) == (1e-8, 1e-6, 1e-5), recipe
        assert (t.lr, t.lr_base_batch, t.weight_decay, t.beta1, t.beta2, t.warmup_epochs) == \
            (5e-4, 4096, 0.5, 0.9, 0.98, 1), recipe
    for recipe in ("demo", "shapes", "compare", "realdata"):
        t = load_config(recipe).train
        assert (t.eps, t.warmup_start_lr, t.min_lr) == (1e-6, 0.0, 0.0), recipe


def test_a_paper_recipe_run_shows_and_uses_the_authors_values(tmp_path):
    """A real run of `-c paper_b16` (shrunk to vit_nano8_32 and 6 steps of 4): config.yaml shows eps
    1e-8, warmup_start_lr 1e-6, min_lr 1e-5, weight decay 0.5, lr 5e-4 at 4096; the optimiser ran with
    eps 1e-8; every logged lr is SLIP's schedule for that run."""
    from rils.train.engine import train

    out = tmp_path / "run"
    latest = train(load_config("paper_b16", [
        "model.preset=vit_nano8_32", "data.source=demo", "data.num_samples=16", "data.workers=0",
        "train.batch_size=4", "train.max_steps=6", "train.precision=fp32", "train.device=cpu",
        "train.log_every=1", f"output_dir={out}"]))
    saved = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert (saved["eps"], saved["warmup_start_lr"], saved["min_lr"]) == (1e-8, 1e-6, 1e-5)
    assert (saved["lr"], saved["lr_base_batch"], saved["weight_decay"]) == (5e-4, 4096, 0.5)
    ckpt = torch.load(latest, weights_only=True)
    assert {g["eps"] for g in ckpt["optimizer"]["param_groups"]} == {1e-8}
    # 16 samples / 4 = 4 steps per epoch: warm-up 4 steps, 6 in all; lr scaled to batch 4
    base = 5e-4 * 4 / 4096
    slip = slip_cosine_scheduler(base, 1e-5, 6, 1, warmup_epochs=4, start_warmup_value=1e-6)   # per step
    logged = {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if "lr" in r}
    # the lr logged after step s is the one step s + 1 (index s) runs with
    assert [logged[s] for s in range(1, 6)] == pytest.approx(list(slip[1:6]), rel=1e-12, abs=0)


@pytest.mark.parametrize("warmup, total", [(4, 20), (1, 5), (2, 2), (10, 400)])
def test_warmup_cosine_with_a_start_lr_is_slips_schedule_step_for_step(warmup, total):
    """With a warm-up start > 0, warmup_cosine x lr equals SLIP's cosine_scheduler (one value per
    optimiser step) at every step; with start 0 the ramp is the one this trainer always had,
    lr x (step + 1) / warm-up, and the cosine is SLIP's."""
    base, end, start = 3e-3, 1e-5, 1e-6
    ours = [base * warmup_cosine(warmup, total, base, end, start)(i) for i in range(total)]
    slip = slip_cosine_scheduler(base, end, total, 1, warmup_epochs=warmup, start_warmup_value=start)
    assert ours == pytest.approx(list(slip), rel=1e-12, abs=1e-20)
    plain = warmup_cosine(warmup, total, base, end)
    assert [plain(i) for i in range(warmup)] == pytest.approx([(i + 1) / warmup for i in range(warmup)])
    assert [base * plain(i) for i in range(warmup, total)] == pytest.approx(list(slip[warmup:]), rel=1e-12)
