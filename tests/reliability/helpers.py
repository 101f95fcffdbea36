"""Shared by the reliability tests: the tiny run of tests/train, fault injection into the method's
forward, and reading a run's outputs."""
import json
import os
import signal
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
# The 32 px preset, fp32, no worker processes, 200 demo samples: a step takes a few ms on a CPU.
TINY = ["model.preset=vit_nano8_32", "train.precision=fp32", "data.workers=0", "data.num_samples=200",
        "train.log_every=1", "train.warmup_steps=2", "train.lr=1e-3", "train.lr_base_batch=8",
        "train.batch_size=8"]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + str(REPO / "tests") + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def run(args, timeout=240, **kw):
    """subprocess.run in its own process group, all of which is killed on a timeout (a hung torchrun
    must not leave its workers behind)."""
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def ckpt_step(path):
    return torch.load(path, weights_only=True)["step"]


def inject_loss(monkeypatch, plan, on_call=None):
    """Make the method's forward return a NaN ("nan") or infinite ("inf") loss on the calls (1-based,
    one per micro-batch) for which `plan(n)` says so. `loss + inf` keeps the gradients finite, so only
    the loss check can catch it; `loss * nan` poisons the gradients too. `on_call(n, method)` runs
    before each forward. Returns the call counter."""
    from rils.train import engine
    real = engine.create_method
    calls = {"n": 0}

    def create(*args, **kwargs):
        method = real(*args, **kwargs)
        forward = method.forward

        def faulty(batch, **kwargs):
            part = kwargs.get("part", 0)   # a split backward (RILS) calls part 1, then part 2
            if part != 2:                  # a micro-batch starts
                calls["n"] += 1
                if on_call is not None:
                    on_call(calls["n"], method)
            out = forward(batch, **kwargs)
            if part == 1:                  # (loss, carry): the outputs come with part 2
                return out
            kind = plan(calls["n"])
            if kind == "nan":
                out["loss"] = out["loss"] * float("nan")
            elif kind == "inf":
                out["loss"] = out["loss"] + float("inf")
            return out

        method.forward = faulty
        return method

    monkeypatch.setattr(engine, "create_method", create)
    return calls


def flat_params(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])
