"""The training command `rils data prepare` prints runs well on the machine it runs on (copied
verbatim on a CPU, a command without a preset would build the paper's vit_b16: 103 s a step). Without
a CUDA GPU the first command is the project's CPU recipe (configs/compare.yaml, vit_ti8_64, 300 steps
of 64), with one the paper's recipe; the other kind's command follows, and the manifest keeps both,
whatever machine wrote it."""
from __future__ import annotations

import json
import shlex

import pytest
import torch

from rils.cli import main
from rils.train.config import load_config
from rils.train.engine import schedule_warnings

from .prepare_fixtures import make_fashion_mnist


def printed_commands(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("rils pretrain ")]


def as_config(command: str, tmp_path):
    """The command as `rils pretrain` would read it (the shell's quoting undone)."""
    argv = shlex.split(command)
    assert argv[:3] == ["rils", "pretrain", "-c"]
    return load_config(argv[3], [*argv[4:], f"output_dir={tmp_path / 'run'}"])


@pytest.fixture(scope="module")
def fm_root(tmp_path_factory):
    return make_fashion_mnist(tmp_path_factory.mktemp("fm-install"), n_train=70, n_test=7)


@pytest.mark.parametrize("cuda", [False, True], ids=["cpu", "gpu"])
def test_the_first_command_suits_this_machine(fm_root, tmp_path, capsys, monkeypatch, cuda):
    """No CUDA GPU: the first command trains vit_ti8_64 for 300 steps of 64 at lr 1e-3 (no short-run
    warning), the paper's vit_b16 second; with one, the other way round."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    out = tmp_path / "fm"
    assert main(["data", "prepare", "fashion-mnist", "--root", str(fm_root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    first, second = printed_commands(text)
    cpu, gpu = (second, first) if cuda else (first, second)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["usage"] == {"pretrain": gpu, "pretrain_cpu": cpu}
    assert ("for this CUDA GPU" if cuda else "no CUDA GPU here") in text

    small = as_config(cpu, tmp_path)
    assert (small.model.preset, small.train.batch_size, small.train.max_steps) == ("vit_ti8_64", 64, 300)
    assert small.data.path == manifest["splits"]["train"]["pattern"] and small.data.num_samples == 70
    lr = small.train.lr * small.train.batch_size / small.train.lr_base_batch
    assert schedule_warnings(lr=lr, warmup=small.train.warmup_steps, total_steps=small.train.max_steps,
                             global_batch=small.train.batch_size, train_cfg=small.train) == []
    paper = as_config(gpu, tmp_path)
    assert paper.model.preset == "vit_b16" and paper.data.num_samples == 70
    assert paper.train.batch_size == 70          # a split smaller than the recipe's 128 still fills a step


def test_a_split_smaller_than_a_cpu_batch_gets_a_batch_it_fills(tmp_path, capsys, monkeypatch):
    """A quick try (23 samples) still gets a CPU command whose batch fits the split, so it trains."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    root = make_fashion_mnist(tmp_path / "install", n_train=23, n_test=7)
    assert main(["data", "prepare", "fashion-mnist", "--root", str(root), "--out", str(tmp_path / "fm")]) == 0
    cpu = as_config(printed_commands(capsys.readouterr().out)[0], tmp_path)
    assert cpu.model.preset == "vit_ti8_64" and cpu.train.batch_size == 23
