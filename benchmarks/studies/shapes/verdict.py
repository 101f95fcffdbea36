"""The pre-registered verdicts (docs/RESULTS.md, "Pre-registered") from benchmarks/studies/shapes/results/*.json:
per-seed values of each primary endpoint, the mean paired difference RILS - CLIP and RILS - MAE+CLIP
with a 95 % bootstrap interval over seeds (10,000 resamples, seeded), and the verdict: holds (interval
above 0), refuted (below 0) or undecided. CLIP's final in-batch accuracy decides whether a seed tests
the claim at all (>= 0.6 valid; < 0.3 not testing it). Prints Markdown; --json writes the numbers."""
import json
import sys
from pathlib import Path

import numpy as np

RES = Path("benchmarks/studies/shapes/results")
ENDPOINTS = [("zeroshot_top1", "zero-shot top-1, mean of shape and colour"),
             ("retrieval_i2t_r1", "retrieval i→t R@1 (held-out)"),
             ("patchseg_color_miou", "colour patch-seg mIoU")]
SEEDS = range(5)


def final_acc(name: str, last: int = 5) -> float | None:
    f = RES / f"{name}.metrics.jsonl"
    if not f.is_file():
        return None
    recs = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    vals = [r["i2t_acc"] for r in recs[-last:] if "i2t_acc" in r]
    return float(np.mean(vals)) if vals else None


def load(name: str):
    f = RES / f"{name}.json"
    return json.loads(f.read_text()) if f.is_file() else None


def bootstrap(diffs: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (n, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


SECONDARY = [("zeroshot_top1", "ZS top-1"), ("retrieval_i2t_r1", "R@1 i→t"), ("patchseg_color_miou", "mIoU"),
             ("linear_top1", "linear (shape)")]
LABELS = {"clip": "CLIP", "mae_clip": "MAE+CLIP", "rils": "RILS", "slip": "SLIP", "mae": "MAE",
          "rils_prototypes": "RILS, learnable prototypes", "rils_lambda0.25": "RILS, λ2 = 0.25 (ablation)",
          "rils_lambda1.0": "RILS, λ2 = 1.0 (ablation)",
          "rils_prototypes_not_detached": "RILS, prototypes not detached (ablation)"}


def secondary() -> dict:
    """Every run of the study (secondary, not for verdicts): the mean over its seeds of each endpoint
    and of the linear probe, with the per-seed values."""
    runs: dict = {}
    for f in sorted(RES.glob("*_s[0-9].json")):
        base, seed = f.stem.rsplit("_s", 1)
        runs.setdefault(base, {})[int(seed)] = json.loads(f.read_text())
    print("\n**Every run (secondary; mean over seeds, per-seed values in brackets)**\n")
    print("| run | seeds | " + " | ".join(label for _, label in SECONDARY) + " |\n|---|---|" + "---|" * len(SECONDARY))
    table = {}
    for base in [b for b in LABELS if b in runs] + sorted(set(runs) - set(LABELS)):
        seeds = sorted(runs[base])
        cells, table[base] = [], {"seeds": seeds}
        for key, _ in SECONDARY:
            vals = [runs[base][s].get(key) for s in seeds]
            vals = [v for v in vals if v is not None]
            if not vals:
                cells.append("–")
                continue
            table[base][key] = {"mean": float(np.mean(vals)), "per_seed": vals}
            per = f" ({', '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else ""
            cells.append(f"{np.mean(vals):.3f}{per}")
        print(f"| {LABELS.get(base, base)} | {', '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return table


def main() -> None:
    out = {"seeds": {}, "verdicts": {}}
    print("| seed | CLIP final in-batch acc | valid? |\n|---|---|---|")
    valid = []
    for s in SEEDS:
        acc = final_acc(f"clip_s{s}")
        ok = None if acc is None else ("yes" if acc >= 0.6 else "no: not testing the claim" if acc < 0.3 else "weak")
        if acc is not None and acc >= 0.3:
            valid.append(s)
        print(f"| {s} | {'–' if acc is None else f'{acc:.3f}'} | {ok or 'not run'} |")
    print()
    for key, label in ENDPOINTS:
        print(f"**{label}**\n\n| seed | CLIP | MAE+CLIP | RILS |\n|---|---|---|---|")
        per = {m: {} for m in ("clip", "mae_clip", "rils")}
        for s in SEEDS:
            row = []
            for m in per:
                r = load(f"{m}_s{s}")
                if r is not None and r.get(key) is not None:
                    per[m][s] = r[key]
                row.append("–" if s not in per[m] else f"{per[m][s]:.3f}")
            print(f"| {s} | " + " | ".join(row) + " |")
        print()
        for other in ("clip", "mae_clip"):
            seeds = [s for s in valid if s in per["rils"] and s in per[other]]
            claim = f"RILS > {'CLIP' if other == 'clip' else 'MAE+CLIP'} on {label}"
            if len(seeds) < 2:
                out["verdicts"][claim] = {"verdict": "not enough paired seeds yet", "seeds": seeds}
                continue
            d = np.array([per["rils"][s] - per[other][s] for s in seeds])
            lo, hi = bootstrap(d)
            verdict = "holds" if lo > 0 else "refuted" if hi < 0 else "undecided"
            out["verdicts"][claim] = {"mean_diff": float(d.mean()), "ci95": [lo, hi], "seeds": seeds,
                                      "verdict": verdict + ("" if len(seeds) >= 5 else f" (only {len(seeds)} seeds)")}
    print("| claim | seeds | mean paired difference | 95 % interval | verdict |\n|---|---|---|---|---|")
    for claim, v in out["verdicts"].items():
        if "mean_diff" in v:
            print(f"| {claim} | {len(v['seeds'])} | {v['mean_diff']:+.3f} | [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] "
                  f"| {v['verdict']} |")
        else:
            print(f"| {claim} | {len(v['seeds'])} | | | {v['verdict']} |")
    out["secondary"] = secondary()
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
