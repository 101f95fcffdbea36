"""The result JSON says what was measured and what ran: accuracies without float32 noise,
a path dataset without splits reported as "all", the linear probe's settings as run, and a chosen lr
at the edge of the sweep flagged."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eval_helpers import make_image_folder, make_open_clip, write_local_dir
from rils.eval import linear_probe, load_dataset, recall_at_k
from rils.eval.cli import main
from rils.eval.linear import probe_metrics
from rils.eval.zeroshot import topk_accuracy

FAST = ["--num-workers", "0", "--quiet", "--no-cache"]


def test_accuracies_are_the_exact_fractions():
    """6703 right of 10000 is written 0.6703, not the float32 mean 0.6703000068664551."""
    targets = torch.zeros(10000, dtype=torch.long)
    logits = torch.zeros(10000, 3)
    logits[:6703, 0] = 1.0        # right
    logits[6703:, 1] = 1.0        # wrong
    assert json.dumps(topk_accuracy(logits, targets, 1)) == "0.6703"
    # retrieval: 3 images, one caption each, the first of 3 captions ranked right
    scores = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    m = recall_at_k(scores, [0, 1, 2], ks=(1,))
    assert json.dumps(m["text_to_image_R@1"]) == json.dumps(1 / 3)


def test_a_float32_loss_is_written_as_float32_holds_it():
    """The probe's cross-entropy (a float32) is written with the digits float32 has, no more."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(4, 3).eval()
    loss = probe_metrics(probe, torch.randn(50, 4), np.arange(50) % 3)["loss"]
    assert repr(loss) == str(np.float32(loss)), loss      # numpy prints a float32 shortest


def test_a_dataset_without_splits_is_reported_as_all(tmp_path):
    """A CSV (or folder) with no split in it was reported as "split": "test", the split asked for."""
    make_image_folder(tmp_path / "flat")
    rows = ["filepath,label"] + [f"{p.relative_to(tmp_path)},{p.parent.name}"
                                 for p in sorted((tmp_path / "flat").rglob("*.png"))]
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    assert load_dataset(str(tmp_path / "all.csv"), "test").split == "all"
    assert load_dataset(str(tmp_path / "flat"), "test").split == "all"
    make_image_folder(tmp_path / "tree" / "test")
    assert load_dataset(str(tmp_path / "tree"), "test").split == "test"    # a split folder: the split
    (tmp_path / "test.csv").write_text((tmp_path / "all.csv").read_text())
    assert load_dataset(str(tmp_path / "{split}.csv"), "test").split == "test"

    write_local_dir(tmp_path / "clip", make_open_clip(0))
    out = tmp_path / "zs.json"
    assert main(["eval", "zeroshot", "--checkpoint", f"local-dir:{tmp_path / 'clip'}", "--dataset",
                 str(tmp_path / "all.csv"), "--out", str(out), *FAST]) == 0
    assert json.loads(out.read_text())["split"] == "all"


def test_the_linear_probe_records_the_epochs_it_ran_and_a_chosen_lr_at_the_sweeps_edge(tmp_path, capsys):
    """`settings.epochs` said 90 (the option) when the probe ran more to reach --min-steps; it now says
    what ran. A blr chosen at either end of the sweep is flagged in the record and on stderr."""
    for split in ("train", "test"):
        make_image_folder(tmp_path / "data" / split, per_class=6, seed=int(split == "test"))
    write_local_dir(tmp_path / "clip", make_open_clip(0))
    out = tmp_path / "lin.json"
    assert main(["eval", "linear", "--checkpoint", f"local-dir:{tmp_path / 'clip'}", "--dataset",
                 str(tmp_path / "data"), "--epochs", "3", "--min-steps", "40", "--probe-batch-size", "4",
                 "--val-fraction", "0.25", "--out", str(out), *FAST]) == 0
    record = json.loads(out.read_text())
    # 12 training images, batch 4: 3 steps an epoch, so 40 steps need 14 epochs
    assert record["settings"]["epochs"] == 14 and record["settings"]["probe_batch_size"] == 4
    assert record["settings"]["warmup_epochs"] == 7        # --warmup-epochs 10, capped at half the run
    edge = record["blr"] in (0.01, 1.0)
    assert record["lr_at_sweep_edge"] is edge
    assert ("the best may lie beyond it" in capsys.readouterr().err) is edge


def test_a_sweep_flags_its_edges():
    """The flag goes by value, not by position in the list; a single blr is no sweep."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = torch.tensor(5 * np.eye(4)[y] + 0.3 * rng.standard_normal((40, 4)), dtype=torch.float32)  # separable
    # A vanishing lr next to a useful one: the useful one wins, the largest of the sweep.
    out = linear_probe(x, y, x, y, 2, blrs=[1e-9, 1e-8, 1.0], epochs=5, batch_size=8, min_steps=1,
                       warmup_epochs=1)
    assert out["blr"] == 1.0 and out["lr_at_sweep_edge"] is True
    listed = linear_probe(x, y, x, y, 2, blrs=[1e-9, 1.0, 1e-8], epochs=5, batch_size=8, min_steps=1,
                          warmup_epochs=1)
    assert listed["blr"] == 1.0 and listed["lr_at_sweep_edge"] is True    # the largest, wherever listed
    single = linear_probe(x, y, x, y, 2, blrs=[1.0], epochs=2, batch_size=8, min_steps=1)
    assert "lr_at_sweep_edge" not in single and single["schedule"]["epochs"] == 2


@pytest.mark.parametrize("n,epochs,min_steps,expected", [(12, 3, 40, (4, 3, 14, 7)), (100, 90, 10, (4, 25, 90, 10))])
def test_probe_schedule(n, epochs, min_steps, expected):
    """(batch, steps per epoch, epochs, warm-up): epochs raised to reach min_steps, warm-up capped at half."""
    from rils.eval.linear import probe_schedule

    assert probe_schedule(n, epochs=epochs, batch_size=4, min_steps=min_steps, warmup_epochs=10) == expected
