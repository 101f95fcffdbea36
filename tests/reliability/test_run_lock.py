"""One run per folder: a run holds an OS lock (flock) on its output_dir while it runs, so a second
start on the same folder is refused in one line, and a killed run leaves nothing that blocks a resume."""
import os
import signal
import subprocess
import sys
import time

from rils.checkpoint import load_checkpoint
from rils.train.config import load_config
from rils.train.engine import train

from .helpers import TINY, env, inject_loss, records, run


def test_a_second_start_on_a_folder_in_use_exits_2_naming_the_holder(tmp_path, monkeypatch):
    """While a run trains, `rils pretrain` on its folder exits with status 2 and one line naming the
    running one's pid, and writes nothing there: the running run finishes, each step logged once. The
    second start is made from inside the first run's step 2, so the first is surely still running."""
    out = tmp_path / "run"
    second = []

    def start_second(n, method):   # n counts micro-batches, one per step here
        if n == 2:
            second.append(run([sys.executable, "-m", "rils", "pretrain", "-c", "demo", *TINY,
                               "train.max_steps=2", f"output_dir={out}"], timeout=180))

    inject_loss(monkeypatch, lambda n: None, on_call=start_second)
    train(load_config("demo", [*TINY, "train.max_steps=4", "train.checkpoint_every=100", f"output_dir={out}"]))
    refused = second[0]
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert refused.stderr.strip().splitlines() == [
        f"rils: error: output_dir {out} is in use by another run (pid {os.getpid()}); "
        f"wait for it or choose another output_dir"]
    assert [r["step"] for r in records(out)] == [1, 2, 3, 4]
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == 4


def test_a_killed_run_leaves_no_lock_behind_and_resumes_at_once(tmp_path):
    """SIGKILL runs no handler, and the killed process's data-loader worker may outlive it for a few
    seconds: the lock file stays, with the dead pid, but the lock itself went with the process (the
    worker does not keep it). `resume=latest` starts at once and continues from the last checkpoint."""
    out, log = tmp_path / "run", tmp_path / "log"
    args = [sys.executable, "-m", "rils", "pretrain", "-c", "demo", *TINY, "data.workers=1",
            "train.checkpoint_every=2", f"output_dir={out}"]
    with open(log, "w") as fh:
        first = subprocess.Popen([*args, "train.max_steps=100000"], env=env(), stdout=fh, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and first.poll() is None and not (out / "checkpoints" / "latest.pt").exists():
            time.sleep(0.05)
        assert first.poll() is None, log.read_text()[-3000:]
        first.send_signal(signal.SIGKILL)   # the main process only: its loader worker is left to notice
        first.wait(timeout=60)
        assert (out / ".lock").read_text().strip() == str(first.pid)
        step = load_checkpoint(out / "checkpoints" / "latest.pt")["step"]
        resumed = run([*args, "resume=latest", f"train.max_steps={step + 2}"], timeout=180)
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)   # the orphaned worker, if it is still there
        except ProcessLookupError:
            pass
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {step})" in resumed.stderr
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == step + 2
    assert [r["step"] for r in records(out)] == list(range(1, step + 3))
