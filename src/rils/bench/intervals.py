"""How sure a measured ratio is: the bootstrap 95 % interval of a step-time ratio from interleaved
repetitions (`ratio_interval`), and whether that interval meets a goal (`verdict`)."""
from __future__ import annotations

import statistics

import torch


def ratio_interval(times_a: list[list[float]], times_b: list[list[float]], *, resamples: int = 2000,
                   seed: int = 0) -> dict:
    """Median and bootstrap 95 % interval of the step-time ratio a/b. Each repetition r timed a and b
    back to back (interleaved), so its ratio of medians is one paired observation; the interval
    resamples repetitions, which carries the machine's drift between repetitions into the spread."""
    per_rep = [statistics.median(a) / statistics.median(b) for a, b in zip(times_a, times_b)]
    g = torch.Generator().manual_seed(seed)
    obs = torch.tensor(per_rep, dtype=torch.float64)
    idx = torch.randint(len(per_rep), (resamples, len(per_rep)), generator=g)
    boot = obs[idx].median(dim=1).values
    lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"median": statistics.median(per_rep), "lo": lo, "hi": hi, "half_width": (hi - lo) / 2,
            "repetitions": len(per_rep), "per_repetition": per_rep}


def verdict(interval: dict, goal: float) -> str:
    """"met" when the whole interval is at or under the goal, "missed" when all of it is above, else
    "undecided": a ratio whose interval straddles a goal is not reported as met."""
    return "met" if interval["hi"] <= goal else "missed" if interval["lo"] > goal else "undecided"
