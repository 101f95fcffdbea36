"""Under `torchrun --max-restarts=1`, a worker killed mid-run makes torchrun restart the
group, which resumes from the latest checkpoint (`resume=latest`) and finishes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rils.checkpoint import load_checkpoint, verify_checkpoint
from rils.train.engine import MetricsLog

from .helpers import TINY, env


def children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:      # field 4 of /proc/PID/stat: the parent's pid
            kids.append(int(stat.parent.name))
    return kids


def local_rank(pid: int):
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(e.split(b"=", 1)[1]) for e in environ if e.startswith(b"LOCAL_RANK=")), None)


def test_torchrun_restarts_a_killed_worker_and_the_run_finishes(tmp_path):
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--max-restarts=1", "--monitor-interval=0.1", "-m", "rils", "pretrain", "-c", "demo", *TINY,
           "resume=latest", "train.checkpoint_every=5", "train.max_steps=60", f"output_dir={out}"]
    log = tmp_path / "torchrun.log"
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, env=env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            victim, deadline = None, time.time() + 180
            while time.time() < deadline and p.poll() is None and victim is None:
                if list(ckpts.glob("step_*.pt")):
                    victim = next((c for c in children(p.pid) if local_rank(c) == 0), None)
                time.sleep(0.005)
            assert victim is not None, "no checkpoint, or no rank-0 worker, before the run ended"
            os.kill(victim, signal.SIGKILL)   # rank 0 writes the checkpoints and the log: the harder case
            assert p.wait(timeout=240) == 0, log.read_text()[-4000:]
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    text = log.read_text()
    assert "resume=latest: no usable checkpoint" in text          # the first start: from scratch
    resumed = [int(line.split("(step ")[1].split(")")[0].split(";")[0]) for line in text.splitlines()
               if "resuming from" in line]
    assert len(resumed) == 1 and 5 <= resumed[0] < 60, text[-4000:]
    ckpt = load_checkpoint(ckpts / "latest.pt")
    assert ckpt["step"] == 60 and verify_checkpoint(ckpts / "latest.pt")
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 61))        # each step once: what followed the checkpoint was redone
    assert not list(ckpts.glob(".*.tmp"))


def test_a_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in range(1, 8)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 8, "lo')
    MetricsLog(tmp_path, resume_step=5, enabled=True).close()
    kept = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in kept] == [1, 2, 3, 4, 5]
