"""The run's progress lines: expected time after the first steps, and a warning when steps are far
slower than the machine's matmul rate predicts."""
import torch

from rils import create_method, create_model
from rils.train import progress as P


def _run(monkeypatch, per_step_s: float, flops: float, rate: float) -> list[str]:
    now = {"t": 0.0}
    monkeypatch.setattr(P.time, "perf_counter", lambda: now["t"])
    monkeypatch.setattr(P, "matmul_flops_per_second", lambda device, precision: rate)
    lines = []
    prog = P.Progress(lines.append, start_step=0, total_steps=100, flops_per_step=flops,
                      device=torch.device("cpu"), precision="fp32")
    for step in range(1, 30):
        now["t"] = step * per_step_s
        prog.step(step)
    return lines


def test_the_expected_time_is_the_measured_step_time_times_the_steps(monkeypatch):
    lines = _run(monkeypatch, per_step_s=2.0, flops=100e9, rate=100e9)   # 1 s predicted, 2 s measured
    assert lines == ["10 steps at 2.00 s/step: about 3.0 min to go (3.3 min for all 100 steps)"]


def test_a_step_far_slower_than_the_matmul_rate_predicts_is_reported(monkeypatch):
    lines = _run(monkeypatch, per_step_s=30.0, flops=63e9, rate=63e9)    # the emulated-bf16 case: 30x
    assert len(lines) == 2 and lines[1].startswith("warning: a step takes 30x what this machine's matmul rate")


def test_the_flop_estimate_is_within_a_factor_of_two_of_the_operator_count():
    from torch.utils.flop_counter import FlopCounterMode

    method = create_method("rils", create_model("vit_ti8_64", method="rils"))
    p = method.model.preset
    batch = {"image": torch.randn(4, 3, p.image_size, p.image_size),
             "text": torch.randint(1, 49000, (4, p.context_length))}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        method(batch)
    counted = 3.0 * counter.get_total_flops()
    assert 0.5 < P.estimate_step_flops(method, 4) / counted < 1.1
