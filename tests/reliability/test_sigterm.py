"""SIGTERM (a scheduler's preemption) saves a checkpoint at the next step boundary on every
rank, like Ctrl-C, and the command exits with status 143; `resume=latest` continues from it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rils.checkpoint import load_checkpoint
from rils.train.config import load_config
from rils.train.engine import RunTerminated, train

from .helpers import TINY, env, inject_loss, records, run

ARGS = ["-c", "demo", *TINY, "train.max_steps=100000", "train.checkpoint_every=100000"]


def steps_logged(out):
    try:
        return len((out / "metrics.jsonl").read_text().splitlines())
    except OSError:
        return 0


def start_and_terminate(cmd, out, log, group=False):
    """Start `cmd`, SIGTERM it (or its whole process group) once it has logged 3 steps, return its exit status."""
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, env=env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and p.poll() is None and steps_logged(out) < 3:
                time.sleep(0.05)
            assert p.poll() is None, log.read_text()[-3000:]
            os.killpg(p.pid, signal.SIGTERM) if group else p.send_signal(signal.SIGTERM)
            return p.wait(timeout=120)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_sigterm_saves_and_exits_143(tmp_path):
    """SIGTERM to the whole process group, as a scheduler sends it: the data loader's worker process gets
    it too, and leaves it to the main process (a killed worker would make torch raise mid-save)."""
    out, log = tmp_path / "run", tmp_path / "log"
    code = start_and_terminate([sys.executable, "-m", "rils", "pretrain", *ARGS, "data.workers=1",
                                f"output_dir={out}"], out, log, group=True)
    text = log.read_text()
    assert code == 143, text[-3000:]
    assert "Traceback" not in text and "terminated (SIGTERM): checkpoint saved at step" in text
    step = load_checkpoint(out / "checkpoints" / "latest.pt")["step"]
    assert step >= 3 and json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == step


def test_sigterm_to_torchrun_saves_on_every_rank_and_resume_continues(tmp_path):
    """torchrun passes SIGTERM on to its workers; both ranks stop at the same step, rank 0 saves."""
    out, log = tmp_path / "run", tmp_path / "log"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rils",
                "pretrain", *ARGS, f"output_dir={out}"]
    start_and_terminate(torchrun, out, log)
    text = log.read_text()
    assert "terminated (SIGTERM): checkpoint saved at step" in text, text[-3000:]
    step = load_checkpoint(out / "checkpoints" / "latest.pt")["step"]
    assert step >= 3
    proc = run([*torchrun, "resume=latest", f"train.max_steps={step + 2}"], timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"(step {step})" in proc.stderr
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == step + 2
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, step + 3))


@pytest.mark.parametrize("accum", [1, 2])
def test_sigterm_during_a_step_stops_at_the_end_of_that_step(tmp_path, monkeypatch, accum):
    """A SIGTERM that arrives while a step runs is acted on at the end of that step, not the next one:
    sent from inside step 3's forward pass (its first micro-batch with accumulation), the run saves at
    step 3 and exits 143, and step 3 is the last one logged."""
    def on_call(n, method):   # n counts micro-batches
        if n == 2 * accum + 1:
            os.kill(os.getpid(), signal.SIGTERM)

    inject_loss(monkeypatch, lambda n: None, on_call=on_call)
    cfg = load_config("demo", [*TINY, "train.max_steps=10", "train.checkpoint_every=100",
                               f"train.accum_steps={accum}", f"output_dir={tmp_path}"])
    with pytest.raises(RunTerminated) as stopped:
        train(cfg)
    assert stopped.value.code == 143
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["step"] == 3
    assert [r["step"] for r in records(tmp_path)] == [1, 2, 3]
