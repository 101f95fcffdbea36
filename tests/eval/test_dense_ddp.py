"""`rils eval segment` under torchrun: two CPU ranks (gloo) fine-tune one model, each on its half of
the global batch, and one record and one checkpoint come out."""
import json
import os
import subprocess
import sys

import pytest

from eval_helpers import write_checkpoint
from rils.data.prepare.shapes_dense import prepare


@pytest.mark.timeout(300)
def test_two_ranks_fine_tune_and_write_one_record(tmp_path):
    prepare(tmp_path / "data", image_size=32, train=8, val=2, seed=0)
    ckpt = write_checkpoint(tmp_path / "latest.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "rils", "eval", "segment",
         "--checkpoint", str(ckpt), "--dataset", str(tmp_path / "data" / "ade"), "--device", "cpu",
         "--precision", "fp32", "--num-workers", "0", "--quiet", "--steps", "2", "--batch", "4", "--size", "32",
         "--head-channels", "8", "--warmup-steps", "1", "--work-dir", str(tmp_path / "work"),
         "--out", str(tmp_path / "seg.json")], env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "seg.json").read_text())
    assert record["steps"] == 2 and 0.0 <= record["metrics"]["mIoU"] <= 1.0
    assert proc.stdout.count("mIoU") == 1           # one rank prints the table
    assert (tmp_path / "work" / "checkpoints" / "latest.pt").is_file()
