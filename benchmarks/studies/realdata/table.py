"""The real-data testbed's table (docs/RESULTS.md) from benchmarks/studies/realdata/results/*.json and metrics.jsonl:
Fashion-MNIST test zero-shot, linear probe (10,000 train images) and 10-shot top-1, openclipart val
retrieval R@1, and from training: the final in-batch image-to-text accuracy and the share of a batch
in RILS's set C (mean of the last 5 logged steps). Usage: python benchmarks/studies/realdata/table.py"""
import json
from pathlib import Path

import numpy as np

RES = Path("benchmarks/studies/realdata/results")
CSV = Path("data/realdata/train.csv")
# Fashion-MNIST captions name the class in varied wording; the class word, in matching order
# ("t-shirt" before "shirt"; "top" is the t-shirt class's other name).
_CLASS_WORDS = ["ankle boot", "t-shirt", "top", "trouser", "pullover", "dress", "coat", "sandal", "sneaker", "bag",
                "shirt"]
ORDER = ["clip", "mae_clip", "rils", "slip", "mae", "rils_prototypes"]


def _last(name: str, key: str, last: int = 5):
    f = RES / f"{name}.metrics.jsonl"
    recs = [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.is_file() else []
    vals = [r[key] for r in recs if key in r][-last:]
    return float(np.mean(vals)) if vals else None


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _f(v, scale=100.0, digits=1):
    return "–" if v is None else f"{v * scale:.{digits}f}"


def accuracy_ceiling(batch: int = 64, batches: int = 3000, seed: int = 0) -> float | None:
    """The in-batch image-to-text accuracy of a perfect model on batches drawn as `data.unique_captions`
    draws them: every clip-art image matched, a Fashion-MNIST image tied among the batch's captions of
    its class (distinct wordings of one class are indistinguishable from the image)."""
    import csv
    import random

    if not CSV.is_file():
        return None
    rows = list(csv.reader(CSV.open()))[1:]

    def cls(row):
        if not row[0].startswith("fashion"):
            return None
        word = next(w for w in _CLASS_WORDS if w in row[1].lower())
        return "t-shirt" if word == "top" else word

    rng, accs = random.Random(seed), []
    for _ in range(batches):
        picked, seen = [], set()
        while len(picked) < batch:
            row = rows[rng.randrange(len(rows))]
            if row[1] not in seen:
                seen.add(row[1])
                picked.append(cls(row))
        accs.append(sum(1.0 if k is None else 1.0 / picked.count(k) for k in picked) / batch)
    return float(np.mean(accs))


def main() -> None:
    runs = sorted(RES.glob("*_s[0-9].json"), key=lambda f: (ORDER.index(f.stem.rsplit("_s", 1)[0])
                                                            if f.stem.rsplit("_s", 1)[0] in ORDER else 99, f.stem))
    print("| run | ZS top-1 | linear | 10-shot | R@1 i→t | R@1 t→i | final in-batch acc | share in C | minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in runs:
        d, name = json.loads(f.read_text()), f.stem
        matched = _last(name, "matched_frac") if d.get("method", "").startswith("rils") else None
        print(f"| {name} | {_f(_get(d, 'zeroshot', 'top1'))} | {_f(_get(d, 'linear', 'metrics', 'top1'))} | "
              f"{_f(_get(d, 'fewshot', 'metrics', '10-shot_mean'))} | "
              f"{_f(_get(d, 'retrieval', 'image_to_text_R@1'))} | {_f(_get(d, 'retrieval', 'text_to_image_R@1'))} | "
              f"{_f(_last(name, 'i2t_acc'), 1, 3)} | {_f(matched, 1, 3)} | "
              f"{d.get('pretrain_and_eval_seconds', 0) / 60:.1f} |")
    ceiling = accuracy_ceiling()
    if ceiling is not None:
        print(f"\nCeiling of the in-batch image-to-text accuracy on this data (a perfect model): {ceiling:.3f}")


if __name__ == "__main__":
    main()
