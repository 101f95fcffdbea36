"""The second registered study's tables and verdicts (docs/RESULTS.md, "Pre-registered, second round:
dense transfer and budget") from the kept files in results/: CLIP's in-batch accuracy and the validity
rule per seed and budget, per-seed tables of every endpoint, the verdict table (mean paired
difference over valid seeds, 95 % bootstrap interval over seeds with 10,000 resamples and generator
seed 0; holds above 0, refuted below 0, undecided otherwise), the paper-layout tables (Tables 2, 3, 5:
ours beside the paper's) and every run's values. Missing runs show as "–"; a claim with fewer than the
three registered seeds says how many it had.

    python benchmarks/studies/dense_budget/verdict.py              # Markdown to stdout
    python benchmarks/studies/dense_budget/verdict.py --write      # also results/verdicts.json, the
                                                                   # generated block of docs/RESULTS.md and
                                                                   # README's summary sentences
    --results DIR: read another results folder (the tests' synthetic studies)"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rils.viz import read_metrics

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[2] / "docs" / "RESULTS.md"
README = HERE.parents[2] / "README.md"
BEGIN, END = "<!-- dense_budget verdict.py: begin -->", "<!-- dense_budget verdict.py: end -->"
SUMMARY_BEGIN, SUMMARY_END = "<!-- dense_budget summary: begin -->", "<!-- dense_budget summary: end -->"
SEEDS = (0, 1, 2)
METHODS = ("clip", "mae", "mae_clip", "rils")
LABEL = {"clip": "CLIP", "mae": "MAE", "mae_clip": "MAE+CLIP", "rils": "RILS", "slip": "SLIP"}
# endpoint -> (file part, path into the JSON, label); part "" is the first study's NAME.json
ENDPOINTS = {
    "seg_miou": ("segment", ("metrics", "mIoU"), "segmentation mIoU"),
    "det_box_ap": ("detect", ("metrics", "bbox", "AP"), "detection box AP"),
    "det_mask_ap": ("detect", ("metrics", "segm", "AP"), "detection mask AP"),
    "lowshot_box_ap": ("lowshot", ("metrics", "bbox", "AP"), "low-shot (10 %) detection box AP"),
    "zeroshot_top1": ("", ("zeroshot_top1",), "zero-shot top-1, mean of shape and colour"),
    "retrieval_i2t_r1": ("", ("retrieval_i2t_r1",), "retrieval i→t R@1"),
}
DENSE = ("seg_miou", "det_box_ap", "det_mask_ap", "lowshot_box_ap")
OTHERS = ("clip", "mae", "mae_clip")   # what RILS is compared with on each dense endpoint
TREND = ("zeroshot_top1", "retrieval_i2t_r1", "seg_miou")
VALID, WEAK = 0.6, 0.3   # CLIP's in-batch i2t accuracy over its last 50 steps: >= 0.3 tests the claim

# The paper's figures (ViT-B/16, 25 epochs of L-20M): Table 2 (COCO), Table 3 (ADE20K), Table 5 (10 %)
PAPER_T2 = {"mae": (48.1, 68.6, 52.9, 42.4, 65.8, 46.4), "clip": (47.7, 69.1, 52.3, 42.0, 65.9, 45.1),
            "slip": (46.5, 68.5, 51.0, 41.5, 65.1, 44.1), "mae_clip": (48.1, 69.6, 52.5, 42.4, 66.2, 45.7),
            "rils": (48.5, 70.5, 53.2, 42.6, 66.8, 45.8)}
PAPER_T3 = {"mae": 44.2, "clip": 45.2, "slip": 45.7, "mae_clip": 45.3, "rils": 48.1}
PAPER_T5 = {"mae": 23.16, "clip": 22.49, "slip": 21.91, "mae_clip": 23.72, "rils": 24.69}


class Study:
    def __init__(self, res: Path):
        self.res = res
        self._read: dict[Path, object] = {}   # each file is read once, however many tables and claims use it

    def _cached(self, f: Path, read):
        if f not in self._read:
            self._read[f] = read(f) if f.is_file() else None
        return self._read[f]

    def _json(self, name: str, part: str):
        return self._cached(self.res / (f"{name}.{part}.json" if part else f"{name}.json"),
                            lambda f: json.loads(f.read_text()))

    def ran(self, method: str, steps: int, seed: int) -> bool:
        """Whether the run's pre-training-side record (NAME.json) exists: it was pre-trained and scored."""
        return self._json(f"{method}_{steps}_s{seed}", "") is not None

    def value(self, method: str, steps: int, seed: int, endpoint: str) -> float | None:
        part, path, _ = ENDPOINTS[endpoint]
        return self.raw(method, steps, seed, part, *path)

    def raw(self, method: str, steps: int, seed: int, part: str, *path: str) -> float | None:
        node = self._json(f"{method}_{steps}_s{seed}", part)
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return None if node is None else float(node)

    def clip_accuracy(self, steps: int, seed: int, last: int = 5) -> float | None:
        """Mean i2t_acc of the last `last` logged lines (log_every 10: the last 50 steps)."""
        records = self._cached(self.res / f"clip_{steps}_s{seed}.metrics.jsonl", read_metrics) or []
        vals = [r["i2t_acc"] for r in records if "i2t_acc" in r][-last:]
        return float(np.mean(vals)) if vals else None

    def valid(self, steps: int, seed: int) -> bool:
        acc = self.clip_accuracy(steps, seed)
        return acc is not None and acc >= WEAK


def bootstrap(diffs: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (n, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def verdict(diffs: dict[int, float]) -> dict:
    seeds = sorted(diffs)
    if len(seeds) < 2:
        return {"verdict": "not enough paired seeds yet", "seeds": seeds}
    d = np.array([diffs[s] for s in seeds])
    lo, hi = bootstrap(d)
    v = "holds" if lo > 0 else "refuted" if hi < 0 else "undecided"
    return {"mean_diff": float(d.mean()), "ci95": [lo, hi], "seeds": seeds, "per_seed": d.tolist(),
            "verdict": v + ("" if len(seeds) >= len(SEEDS) else f" (only {len(seeds)} seeds)")}


def dense_claim(other: str, key: str) -> str:
    return f"RILS > {LABEL[other]} on {ENDPOINTS[key][2]} (600 steps)"


def trend_claim(key: str) -> str:
    return f"RILS − CLIP at 2,400 > at 600 steps on {ENDPOINTS[key][2]}"


def claims(st: Study) -> dict:
    out = {}
    for key in DENSE:
        for other in OTHERS:
            diffs = {}
            for s in SEEDS:
                r, o = st.value("rils", 600, s, key), st.value(other, 600, s, key)
                if st.valid(600, s) and r is not None and o is not None:
                    diffs[s] = r - o
            out[dense_claim(other, key)] = verdict(diffs)
    for key in TREND:
        diffs = {}
        for s in SEEDS:
            v = {b: (st.value("rils", b, s, key), st.value("clip", b, s, key)) for b in (600, 2400)}
            if all(x is not None for pair in v.values() for x in pair) and st.valid(600, s) and st.valid(2400, s):
                diffs[s] = (v[2400][0] - v[2400][1]) - (v[600][0] - v[600][1])
        out[trend_claim(key)] = verdict(diffs)
    return out


def fmt(x, pct: bool = False, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.{digits}f}"


def mean(vals):
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def render(st: Study) -> tuple[str, dict]:
    lines, data = [], {}
    p = lines.append
    verdicts = claims(st)
    data["verdicts"] = verdicts
    p("**Verdicts**\n")
    p("| claim | seeds | mean paired difference | 95 % interval | verdict |\n|---|---|---|---|---|")
    for claim, v in verdicts.items():
        if "mean_diff" in v:
            p(f"| {claim} | {len(v['seeds'])} | {v['mean_diff']:+.3f} | [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] "
              f"| {v['verdict']} |")
        else:
            p(f"| {claim} | {len(v['seeds'])} | | | {v['verdict']} |")

    p("\n**Validity: CLIP's in-batch image-to-text accuracy over its last 50 steps**\n")
    p("| seed | 600 steps | 2,400 steps |\n|---|---|---|")
    data["clip_in_batch_accuracy"] = {}
    for s in SEEDS:
        cells = []
        for b in (600, 2400):
            acc = st.clip_accuracy(b, s)
            data["clip_in_batch_accuracy"][f"{b}_s{s}"] = acc
            cells.append("not run" if acc is None else
                         f"{acc:.3f} ({'valid' if acc >= VALID else 'weak' if acc >= WEAK else 'not testing the claim'})")
        p(f"| {s} | " + " | ".join(cells) + " |")

    data["per_seed"] = {}
    for key, (_, _, label) in ENDPOINTS.items():
        methods = [m for m in METHODS if not (m == "mae" and key in ("zeroshot_top1", "retrieval_i2t_r1"))]
        cols = [(m, 600) for m in methods] + [(m, 2400) for m in ("clip", "rils")]
        p(f"\n**{label}** (per seed)\n")
        p("| seed | " + " | ".join(f"{LABEL[m]} {b:,}" for m, b in cols) + " |\n|---|" + "---|" * len(cols))
        for s in SEEDS:
            vals = [st.value(m, b, s, key) for m, b in cols]
            data["per_seed"].setdefault(key, {})[s] = {f"{m}_{b}": v for (m, b), v in zip(cols, vals)}
            p(f"| {s} | " + " | ".join(fmt(v) for v in vals) + " |")

    def avg(m, b, key):
        return mean([st.value(m, b, s, key) for s in SEEDS])

    def avg_raw(m, b, part, *path):
        return mean([st.raw(m, b, s, part, *path) for s in SEEDS])

    p("\n**Layout of Table 3 (semantic segmentation, mIoU %)**: ours = shapes-dense, `vit_ti8_64`, mean of "
      "seeds; paper = ADE20K, ViT-B/16, 25 epochs of L-20M, 160k iterations. Different scales: compare "
      "orderings, not values.\n")
    p("| method | ours, 600 steps | ours, 2,400 steps | paper |\n|---|---|---|---|")
    for m in ("mae", "clip", "slip", "mae_clip", "rils"):
        ours = [fmt(avg(m, b, "seg_miou"), pct=True) if m in METHODS and (b == 600 or m in ("clip", "rils"))
                else "–" for b in (600, 2400)]
        p(f"| {LABEL[m]} | {ours[0]} | {ours[1]} | {PAPER_T3[m]} |")

    t2 = [("bbox", "AP"), ("bbox", "AP50"), ("bbox", "AP75"), ("segm", "AP"), ("segm", "AP50"), ("segm", "AP75")]
    p("\n**Layout of Table 2 (detection and instance segmentation, %; each cell ours / paper)**: ours = "
      "shapes-dense, 600 pre-training steps, mean of seeds; paper = COCO, 25 epochs of fine-tuning.\n")
    p("| method | AP^B | AP^B_50 | AP^B_75 | AP^M | AP^M_50 | AP^M_75 |\n|---|---|---|---|---|---|---|")
    for m in ("mae", "clip", "slip", "mae_clip", "rils"):
        ours = [avg_raw(m, 600, "detect", "metrics", kind, k) if m in METHODS else None for kind, k in t2]
        p(f"| {LABEL[m]} | " + " | ".join(f"{fmt(o, pct=True)} / {pv}" for o, pv in zip(ours, PAPER_T2[m])) + " |")

    p("\n**Layout of Table 5 (low-shot detection AP^B %, 10 % of the training images)**: ours = "
      "shapes-dense (60 of 600 images, subset seed = pre-training seed), 600 pre-training steps, mean of "
      "seeds; paper = COCO, 12 epochs.\n")
    p("| method | ours, 10 % | paper, 10 % |\n|---|---|---|")
    for m in ("mae", "clip", "slip", "mae_clip", "rils"):
        p(f"| {LABEL[m]} | {fmt(avg(m, 600, 'lowshot_box_ap'), pct=True) if m in METHODS else '–'} | {PAPER_T5[m]} |")

    extra = [("", ("patchseg_color_miou",), "colour patch-seg mIoU"), ("", ("linear_top1",), "linear (shape)")]
    p("\n**Every run (secondary; mean over seeds, per-seed values in brackets)**\n")
    cols = [(k, ENDPOINTS[k][2]) for k in ENDPOINTS] + [(e[1][0], e[2]) for e in extra]
    p("| run | seeds | " + " | ".join(c[1] for c in cols) + " |\n|---|---|" + "---|" * len(cols))
    data["runs"] = {}
    for m, b in [(m, 600) for m in METHODS] + [("clip", 2400), ("rils", 2400)]:
        cells, seeds_run = [], [s for s in SEEDS if st.ran(m, b, s)]
        for key, _ in cols:
            vals = [st.value(m, b, s, key) if key in ENDPOINTS else st.raw(m, b, s, "", key) for s in SEEDS]
            data["runs"].setdefault(f"{m}_{b}", {})[key] = vals
            known = [v for v in vals if v is not None]
            cells.append("–" if not known else f"{np.mean(known):.3f}" +
                         (f" ({', '.join(fmt(v) for v in vals)})" if len(known) > 1 else ""))
        p(f"| {LABEL[m]}, {b:,} steps | {', '.join(map(str, seeds_run)) or '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", data


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}".replace("-", "−")


def seed_list(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds[:-1])) + (" and " if len(seeds) > 1 else "") + str(seeds[-1])


def summary(st: Study, verdicts: dict) -> str:
    """README's sentences on the second round from the same study and verdicts as the RESULTS.md block:
    verdict counts, mean paired deficits, the leader per dense endpoint and the trend's gaps."""
    dense = {dense_claim(o, key): verdicts[dense_claim(o, key)] for key in DENSE for o in OTHERS}
    kinds = [v["verdict"].split(" (")[0] for v in dense.values()]
    counted = ", ".join(f"{kinds.count(k)} {k}" for k in ("holds", "refuted", "undecided") if kinds.count(k))
    n = sorted({len(v["seeds"]) for v in dense.values()})
    per_claim = f"{n[0]} of {len(SEEDS)} seeds each" if len(n) == 1 else f"{n[0]}–{n[-1]} of {len(SEEDS)} seeds per claim"
    out = [f"At 600 steps ({per_claim}; docs/RESULTS.md gives each claim's) the twelve dense claims "
           f"read: {counted or 'none decided yet'}."]
    diffs = []
    for key in DENSE:
        per = [f"{LABEL[o]} {signed(dense[dense_claim(o, key)].get('mean_diff'))}" for o in OTHERS]
        diffs.append(f"{ENDPOINTS[key][2]} {', '.join(per)}")
    out.append("Mean paired RILS − other: " + "; ".join(diffs) + ".")
    leaders = {}
    for key in DENSE:   # over the seeds every method has, so that no method's mean has a seed the others lack
        complete = [s for s in SEEDS if all(st.value(m, 600, s, key) is not None for m in METHODS)]
        means = {m: mean([st.value(m, 600, s, key) for s in complete]) for m in METHODS}
        if all(v is not None for v in means.values()):
            leaders.setdefault(LABEL[max(means, key=means.get)], []).append(ENDPOINTS[key][2])
    if len(leaders) == 1 and len(next(iter(leaders.values()))) == len(DENSE):
        out.append(f"{next(iter(leaders))} has the highest mean on every dense endpoint.")
    elif leaders:
        out.append("Highest mean: " + "; ".join(f"{m} on {', '.join(ks)}" for m, ks in leaders.items()) + ".")
    gaps = []
    for key in TREND:
        v = verdicts[trend_claim(key)]
        if not v["seeds"]:
            continue
        g600, g2400 = (mean([st.value("rils", b, s, key) - st.value("clip", b, s, key) for s in v["seeds"]])
                       for b in (600, 2400))
        said = "only" if len(v["seeds"]) == 1 else f"mean; {v['verdict'].replace(' (', ', ').rstrip(')')}"
        gaps.append(f"{ENDPOINTS[key][2]} {signed(g600)} to {signed(g2400)} "
                    f"(seed{'s' if len(v['seeds']) > 1 else ''} {seed_list(v['seeds'])} {said})")
    if gaps:
        out.append("RILS − CLIP from 600 to 2,400 steps: " + "; ".join(gaps) + ".")
    return "\n".join(out) + "\n"


def replace_block(path: Path, begin: str, end: str, text: str) -> None:
    doc = path.read_text()
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--write", action="store_true", help="write results/verdicts.json, docs/RESULTS.md's block and README's summary")
    args = ap.parse_args(argv)
    st = Study(args.results)
    text, data = render(st)
    sys.stdout.write(text)
    if args.write:
        (args.results / "verdicts.json").write_text(json.dumps(data, indent=2) + "\n")
        replace_block(DOC, BEGIN, END, text)
        replace_block(README, SUMMARY_BEGIN, SUMMARY_END, summary(st, data["verdicts"]))


if __name__ == "__main__":
    main()
