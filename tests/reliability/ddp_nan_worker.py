"""Run under torchrun by test_nonfinite_steps: the real engine with a loss that is non-finite on one
rank for some steps; each rank writes a digest of its final weights."""
import hashlib
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reliability.helpers import inject_loss  # noqa: E402

from rils import distributed as D  # noqa: E402
from rils.train import engine  # noqa: E402
from rils.train.config import load_config  # noqa: E402


def main(out, *overrides):
    rank = int(os.environ["RANK"])
    plan = {1: {3: "inf", 4: "inf"}, 0: {6: "nan"}}[rank]
    kept = {}
    inject_loss(pytest.MonkeyPatch(), plan.get, on_call=lambda n, m: kept.__setitem__("m", m))
    engine.train(load_config("demo", list(overrides)))
    assert D.world_size() == 2
    sha = hashlib.sha256()
    for p in kept["m"].parameters():
        sha.update(p.detach().cpu().numpy().tobytes())
    Path(out, f"rank{rank}.txt").write_text(sha.hexdigest())


if __name__ == "__main__":
    main(*sys.argv[1:])
