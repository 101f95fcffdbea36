"""SIGKILL after a checkpoint, resume=latest: the run ends with exactly the uninterrupted weights."""
import os
import signal
import subprocess
import time

import torch

from .helpers import TINY, env, rils_cmd, run, weights

ARGS = ["-c", "demo", *TINY, "train.max_steps=60", "train.checkpoint_every=5", "train.batch_size=8"]


def latest_is_a_step_1x(ckpts):
    """latest.pt has been re-linked to step 10-19 (it follows the periodic file and its sidecar)."""
    for path in ckpts.glob("step_0000001*.pt"):
        try:
            if os.path.samefile(path, ckpts / "latest.pt"):
                return True
        except OSError:
            pass
    return False


def test_kill_and_resume_is_exact(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = run(rils_cmd("pretrain", *ARGS, f"output_dir={full}"))
    assert proc.returncode == 0, proc.stderr

    p = subprocess.Popen(rils_cmd("pretrain", *ARGS, f"output_dir={killed}"), env=env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and p.poll() is None:
        if latest_is_a_step_1x(killed / "checkpoints"):
            break
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    step_at_kill, _ = weights(killed)
    assert 10 <= step_at_kill < 60, "the kill must land mid-run"

    proc = run(rils_cmd("pretrain", *ARGS, f"output_dir={killed}", "resume=latest"))
    assert proc.returncode == 0, proc.stderr
    assert f"step {step_at_kill}" in proc.stderr
    step_a, a = weights(full)
    step_b, b = weights(killed)
    assert step_a == step_b == 60
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # the log holds each step once, as if the run had never stopped
    import json
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 61))


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(rils_cmd("pretrain", *ARGS, "train.max_steps=100000", f"output_dir={out}"), env=env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "checkpoint saved" in err and "Traceback" not in err
    step, _ = weights(out)
    assert step > 0
