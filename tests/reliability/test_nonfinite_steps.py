"""A step with a non-finite loss or gradient changes no weight and no optimiser state, is
logged (`skipped_steps`), and still counts as a step; `train.max_bad_steps` in a row stop the run with a
one-line error and a non-zero exit, leaving the last good checkpoint as it was. Under DDP every rank
takes the same decision."""
import math
import sys
from pathlib import Path

import pytest
import torch

from rils.checkpoint import load_checkpoint, verify_checkpoint
from rils.train.config import load_config
from rils.train.engine import RunAborted, train

from .helpers import TINY, ckpt_step, flat_params, inject_loss, records, run


def test_nonfinite_steps_are_skipped_counted_and_change_nothing(tmp_path, monkeypatch):
    bad = {3: "nan", 4: "nan", 6: "inf"}     # steps 3, 4 (NaN gradients) and 6 (finite gradients)
    before = {}
    inject_loss(monkeypatch, bad.get, on_call=lambda n, m: before.__setitem__(n, flat_params(m)))
    cfg = load_config("demo", [*TINY, "train.max_steps=8", "train.checkpoint_every=100", f"output_dir={tmp_path}"])
    ckpt = load_checkpoint(train(cfg))

    # the weights before step n+1 equal those before step n exactly when step n was skipped
    for n in range(1, 8):
        assert torch.equal(before[n], before[n + 1]) == (n in bad), n
    assert ckpt["step"] == 8                                            # skipped steps count as steps
    assert ckpt["scheduler"]["last_epoch"] == 8                         # ... and move the lr schedule
    assert all(s["step"] == 8 - len(bad) for s in ckpt["optimizer"]["state"].values())  # Adam saw 5 updates
    assert ckpt["skipped_steps"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())

    recs = records(tmp_path)
    assert [r["step"] for r in recs] == list(range(1, 9))
    assert [r["skipped_steps"] for r in recs] == [0, 0, 1, 2, 2, 3, 3, 3]
    for r in recs:
        if r["step"] in bad:    # nothing of a skipped step enters the logged means
            assert "loss" not in r
        else:
            assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])
    assert recs[2]["grad_norm"] is None and recs[5]["grad_norm"] is not None   # NaN grads vs inf loss


def test_max_bad_steps_in_a_row_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    latest = tmp_path / "checkpoints" / "latest.pt"
    snapshot = {}

    def on_call(n, method):
        if n == 8:   # the first bad step: what is on disk now must stay so
            snapshot["latest"] = latest.read_bytes()
            snapshot["sidecar"] = latest.with_name("latest.pt.sha256").read_bytes()

    inject_loss(monkeypatch, lambda n: "nan" if n >= 8 else None, on_call)
    cfg = load_config("demo", [*TINY, "train.max_steps=40", "train.checkpoint_every=5",
                               "train.max_bad_steps=4", f"output_dir={tmp_path}"])
    with pytest.raises(RunAborted) as info:
        train(cfg)
    message = str(info.value)
    assert isinstance(info.value, SystemExit) and info.value.code == message   # exit status 1, no traceback
    assert len(message.splitlines()) == 1 and message.startswith("rils: error: ")
    assert "4 consecutive steps" in message and "train.max_bad_steps=4" in message and "step 11" in message
    assert "step_00000005.pt (step 5)" in message
    # step 10 fell inside the bad streak: no checkpoint was written then, nor at the abort
    assert sorted(p.name for p in latest.parent.iterdir()) == [
        "latest.pt", "latest.pt.sha256", "step_00000005.pt", "step_00000005.pt.sha256"]
    assert latest.read_bytes() == snapshot["latest"]
    assert latest.with_name("latest.pt.sha256").read_bytes() == snapshot["sidecar"]
    assert verify_checkpoint(latest) and ckpt_step(latest) == 5
    assert [r["skipped_steps"] for r in records(tmp_path)][-4:] == [1, 2, 3, 4]
    assert "update skipped (4 in a row" in capsys.readouterr().err


SCRIPT = """
import sys
sys.path[:0] = {paths!r}
import pytest
from reliability.helpers import inject_loss
mp = pytest.MonkeyPatch()
inject_loss(mp, lambda n: "nan" if n >= 3 else None)
from rils.cli import main
sys.exit(main(["pretrain", "-c", "demo", *{args!r}]))
"""


def test_the_command_exits_1_with_one_line(tmp_path):
    from .helpers import REPO
    args = [*TINY, "train.max_steps=40", "train.max_bad_steps=3", f"output_dir={tmp_path}"]
    proc = run([sys.executable, "-c", SCRIPT.format(paths=[str(REPO / "src"), str(REPO / "tests")], args=args)])
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rils: error: 3 consecutive steps with a non-finite loss"), last
    assert "no checkpoint was written" in last


def test_ranks_decide_together(tmp_path):
    """2 ranks (gloo): rank 1 has an infinite loss with finite gradients at steps 3-4 (only the
    all-reduced loss flag can tell rank 0), rank 0 a NaN loss at step 6 (it reaches rank 1 through the
    gradient all-reduce). Every rank skips the same 3 steps: no hang, and identical weights at the end."""
    worker = Path(__file__).with_name("ddp_nan_worker.py")
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(worker), str(tmp_path), *TINY, "train.max_steps=8", "train.checkpoint_every=100",
                f"output_dir={tmp_path / 'run'}"], timeout=120)   # a split decision hangs the next collective
    assert proc.returncode == 0, proc.stderr[-4000:]
    digests = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert digests[0] == digests[1]
    recs = records(tmp_path / "run")
    assert [r["skipped_steps"] for r in recs] == [0, 0, 1, 2, 2, 3, 3, 3]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["skipped_steps"] == 3


def test_skips_read_a_step_late_count_the_same(tmp_path, monkeypatch):
    """Between log lines the engine reads a step's outcome only after queuing the next step (no
    host-device wait on a GPU): the same steps are skipped, counted and logged as with log_every=1."""
    bad = {3: "nan", 4: "nan", 6: "inf"}
    before = {}
    inject_loss(monkeypatch, bad.get, on_call=lambda n, m: before.__setitem__(n, flat_params(m)))
    cfg = load_config("demo", [*TINY, "train.max_steps=8", "train.checkpoint_every=100", "train.log_every=4",
                               f"output_dir={tmp_path}"])
    ckpt = load_checkpoint(train(cfg))
    for n in range(1, 8):
        assert torch.equal(before[n], before[n + 1]) == (n in bad), n
    assert ckpt["skipped_steps"] == 3
    assert all(s["step"] == 8 - len(bad) for s in ckpt["optimizer"]["state"].values())
    recs = records(tmp_path)
    assert [(r["step"], r["skipped_steps"]) for r in recs] == [(4, 2), (8, 3)]


def test_a_bad_streak_seen_a_step_late_still_stops_the_run(tmp_path, monkeypatch, capsys):
    inject_loss(monkeypatch, lambda n: "nan" if n >= 8 else None)
    cfg = load_config("demo", [*TINY, "train.max_steps=40", "train.checkpoint_every=5", "train.log_every=100",
                               "train.max_bad_steps=4", f"output_dir={tmp_path}"])
    with pytest.raises(RunAborted) as info:
        train(cfg)
    message = str(info.value)
    assert "4 consecutive steps" in message and "the last at step 11" in message
    assert "step_00000005.pt (step 5)" in message      # step 10 was inside the streak: not saved
    latest = tmp_path / "checkpoints" / "latest.pt"
    assert ckpt_step(latest) == 5 and not (tmp_path / "checkpoints" / "step_00000010.pt").exists()
    assert "step 11: non-finite loss or gradient norm; update skipped (4 in a row" in capsys.readouterr().err
