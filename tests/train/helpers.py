"""Shared by the training tests: run the real command in a subprocess and read its outputs."""
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
# A run small enough for a test: the 32 px preset, fp32 (bit-exact on CPU), no worker processes.
TINY = ["model.preset=vit_nano8_32", "train.precision=fp32", "data.workers=0", "data.num_samples=200",
        "train.log_every=1", "train.warmup_steps=2", "train.lr=1e-3", "train.lr_base_batch=8"]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def rils_cmd(*args):
    return [sys.executable, "-m", "rils", *args]


def run(args, timeout=240, **kw):
    return subprocess.run(args, env=env(), capture_output=True, text=True, timeout=timeout, **kw)


def weights(run_dir):
    ckpt = torch.load(Path(run_dir) / "checkpoints" / "latest.pt", weights_only=True)
    return ckpt["step"], ckpt["state_dict"]
