"""The paper recipe is no trap for a short run. `pretrain` warns in one line when the
warm-up does not end before the run or the scaled lr is below 1e-5, naming the key that fixes it; and
`data.workers` from a recipe is capped at this machine's CPUs (paper_b16's 8 on a 2-core machine made
PyTorch warn on every run), while `pretrain --help` says so."""
import warnings

import pytest
import torch

from rils.cli import main
from rils.train import config as C
from rils.train.config import TrainConfig, load_config
from rils.train.engine import schedule_warnings

from .helpers import TINY

SHARDS = ["data.path=/data/laion/{00000..00009}.tar"]   # never opened: load_config only


def test_a_paper_recipe_short_run_warns_in_one_line_each_naming_the_fix(tmp_path, capsys):
    """The issue's trap at test size: lr 5e-4 at base 4096 with a batch of 8 (9.8e-7) and a one-epoch
    warm-up (25 steps) in a 2-step run: two warnings on stderr, one line each, naming the keys."""
    assert main(["pretrain", "-c", "demo", *TINY, "train.batch_size=8", "train.max_steps=2", "train.lr=5e-4",
                 "train.lr_base_batch=4096", "train.warmup_steps=0", "train.warmup_epochs=1",
                 f"output_dir={tmp_path}"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert len(lines) == 2, lines
    assert "warm-up (25 steps)" in lines[0] and "run (2 steps)" in lines[0] and "train.warmup_steps=1" in lines[0]
    assert "lr 9.8e-07" in lines[1] and "train.lr_base_batch=8" in lines[1]


def test_schedule_warnings_fire_at_their_thresholds_only():
    """The issue's example (batch 32, 60 steps, 204-step warm-up) gets both warnings with the numbers
    that fix it; the recipes made for short runs (demo: lr 1e-3 at 64, 20 of 200 steps) get none."""
    paper = TrainConfig(lr=5e-4, lr_base_batch=4096)
    got = schedule_warnings(lr=5e-4 * 32 / 4096, warmup=204, total_steps=60, global_batch=32, train_cfg=paper)
    assert len(got) == 2 and "train.warmup_steps=6" in got[0] and "train.lr_base_batch=32" in got[1]
    assert all("\n" not in w for w in got)
    demo = TrainConfig(lr=1e-3, lr_base_batch=64)
    assert schedule_warnings(lr=1e-3, warmup=20, total_steps=200, global_batch=64, train_cfg=demo) == []
    assert schedule_warnings(lr=1e-5, warmup=199, total_steps=200, global_batch=64, train_cfg=demo) == []
    assert len(schedule_warnings(lr=1e-3, warmup=200, total_steps=200, global_batch=64, train_cfg=demo)) == 1


def test_recipe_workers_are_capped_at_the_cpus_and_a_typed_value_is_kept(monkeypatch):
    """paper_b16 sets 8: a 2-CPU machine gets 2, and 1 per rank when torchrun starts 2 ranks on it;
    `data.workers=N` typed on the command line (flat or as a mapping) is used as given."""
    monkeypatch.setattr(C, "available_cpus", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert load_config("rils", SHARDS).data.workers == 2
    assert load_config("rils", [*SHARDS, "data.workers=8"]).data.workers == 8
    assert load_config("rils", [*SHARDS, "data={workers: 5, path: x.tar}"]).data.workers == 5
    assert load_config("demo").data.workers == 1                  # under the cap: the recipe's own
    assert load_config(None).data.workers == 2                    # the default, 2, is capped alike
    monkeypatch.setattr(C, "available_cpus", lambda: 64)
    assert load_config("rils", SHARDS).data.workers == 8
    monkeypatch.setattr(C, "available_cpus", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert load_config("rils", SHARDS).data.workers == 1


def test_the_paper_recipe_gets_no_dataloader_warning_on_this_machine(monkeypatch):
    """What the user saw: PyTorch's DataLoader warns when asked for more workers than the process has
    CPUs. With the recipe's workers as resolved here it stays silent (on a machine with 8 or more
    CPUs this holds trivially; the test above covers the cap itself)."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    workers = load_config("rils", SHARDS).data.workers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.utils.data.DataLoader(range(4), num_workers=workers)
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]


def test_pretrain_help_states_the_cap(capsys):
    """`pretrain --help` said 2 while the recipe ran 8: it now says the recipe's value is capped."""
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("data.workers"))
    assert "capped at this machine's CPUs" in line and "paper_b16: 8" in line
