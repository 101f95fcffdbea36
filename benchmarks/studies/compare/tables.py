"""Build the tables and plots of docs/RESULTS.md from results/*.json and *.jsonl beside this script (written by
benchmarks/studies/compare/run.sh). Only the part between the `results:begin/end` markers is rewritten; the
prose around it is kept."""
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[2] / "docs"
RES = HERE / "results"
PATCHSEG = HERE.parent / "patchseg" / "results"   # benchmarks/studies/patchseg/run.sh's records
ORDER = ["mae", "clip", "slip", "mae_clip", "rils_prototypes", "rils"]
NAMES = {"mae": "MAE (RILS recipe)", "clip": "CLIP", "slip": "SLIP", "mae_clip": "MAE+CLIP", "rils": "RILS",
         "rils_prototypes": "RILS, learnable prototypes (Table 10)"}
# The paper's ViT-B/16, 25 epochs on LAION-20M (Tables 1, 4, 6, 7) and L-10M (Table 10): for context only.
PAPER = {
    "lin": {"mae": 44.3, "clip": 67.8, "slip": 70.1, "mae_clip": 64.5, "rils": 71.5, "rils_prototypes": 67.7},
    "zs_in1k": {"clip": 40.3, "slip": 41.6, "mae_clip": 42.3, "rils": 45.0, "rils_prototypes": 34.8},
    "fewshot": {"mae": (3.4, 5.2, 10.1, 14.8), "clip": (19.4, 29.2, 39.8, 46.3), "slip": (17.7, 27.2, 38.6, 46.4),
                "mae_clip": (21.1, 31.1, 41.6, 47.5), "rils": (24.0, 34.6, 45.7, 51.8)},
    "coco": {"clip": (41.82, 30.54), "slip": (44.54, 33.26), "mae_clip": (42.72, 31.40), "rils": (45.06, 34.86)},
}
SHOTS = (1, 2, 5, 10)


def load_runs():
    runs = {}
    for f in sorted(RES.glob("*.eval.json")):
        name = f.name[: -len(".eval.json")]
        method, seed = name.rsplit("_s", 1)
        ev = json.loads(f.read_text())
        tfile = RES / f"{name}.time.json"
        ev["time"] = json.loads(tfile.read_text()) if tfile.exists() else {}
        metrics = [json.loads(x) for x in (RES / f"{name}.metrics.jsonl").read_text().splitlines() if x.strip()]
        ev["curve"] = metrics
        runs.setdefault(method, {})[int(seed)] = ev
    return runs


def pm(values, scale=100.0, digits=1):
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def get(ev, *keys):
    for k in keys:
        if ev is None or k not in ev:
            return None
        ev = ev[k]
    return ev


def tables(runs):
    methods = [m for m in ORDER if m in runs]
    out = []
    seeds = {m: sorted(runs[m]) for m in methods}
    out += ["Each cell: mean ± sample standard deviation over pre-training seeds (seed count in the first table); "
            "a single number is one seed. Ours: `vit_ti8_64`, 300 steps x 64 on openclipart + Fashion-MNIST "
            "(benchmarks/studies/compare/results/). Paper: ViT-B/16, 25 epochs on LAION-20M — different data, model and budget, "
            "shown for the direction of the differences only.", ""]

    out += ["### Linear probe (layout of Table 1)", "",
            "| method | seeds | ours: Fashion-MNIST linear top-1 | paper: IN-1K Lin. |", "|---|---:|---:|---:|"]
    for m in methods:
        v = [get(runs[m][s], "linear", "metrics", "top1") for s in seeds[m]]
        out.append(f"| {NAMES[m]} | {len(seeds[m])} | {pm(v)} | {PAPER['lin'].get(m, '–')} |")

    out += ["", "### Few-shot logistic regression (layout of Table 4)", "",
            "| method | " + " | ".join(f"{k}-shot (ours)" for k in SHOTS) + " | paper IN-1K 1/2/5/10 |",
            "|---|" + "---:|" * len(SHOTS) + "---|"]
    for m in methods:
        cells = [pm([get(runs[m][s], "fewshot", "metrics", f"{k}-shot_mean") for s in seeds[m]]) for k in SHOTS]
        paper = "/".join(str(x) for x in PAPER["fewshot"].get(m, ())) or "–"
        out.append(f"| {NAMES[m]} | " + " | ".join(cells) + f" | {paper} |")

    out += ["", "### Zero-shot classification (layout of Table 6)", "",
            "Chance: top-1 10.0, top-5 50.0.", "",
            "| method | ours: Fashion-MNIST top-1 | top-5 | mean per class | paper: IN-1K ZS |", "|---|---:|---:|---:|---:|"]
    for m in methods:
        if get(runs[m][seeds[m][0]], "zeroshot") is None:
            continue
        c = [pm([get(runs[m][s], "zeroshot", k) for s in seeds[m]]) for k in ("top1", "top5", "mean_per_class")]
        out.append(f"| {NAMES[m]} | " + " | ".join(c) + f" | {PAPER['zs_in1k'].get(m, '–')} |")

    out += ["", "### Image-text retrieval on openclipart val, 351 images (layout of Table 7)", "",
            "Chance: R@1 0.3, R@5 1.4, R@10 2.8.", "",
            "| method | I→T R@1 | R@5 | R@10 | T→I R@1 | R@5 | R@10 | paper COCO I→T / T→I R@1 |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for m in methods:
        if get(runs[m][seeds[m][0]], "retrieval") is None:
            continue
        c = [pm([get(runs[m][s], "retrieval", f"{d}_R@{k}") for s in seeds[m]])
             for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
        paper = "{} / {}".format(*PAPER["coco"][m]) if m in PAPER["coco"] else "–"
        out.append(f"| {NAMES[m]} | " + " | ".join(c) + f" | {paper} |")

    out += ["", "### Runs", "", "| run | pre-training wall time (s) | images/s (median) | final loss | final in-batch i2t acc | eval time (s) |",
            "|---|---:|---:|---:|---:|---:|"]
    for m in methods:
        for s in seeds[m]:
            ev = runs[m][s]
            last = ev["curve"][-1]
            ips = statistics.median(r["images_per_sec"] for r in ev["curve"])
            acc = last.get("i2t_acc")
            out.append(f"| {m}_s{s} | {ev['time'].get('pretrain_seconds', '–')} | {ips:.0f} | {last['loss']:.3f} | "
                       f"{'–' if acc is None else f'{acc:.3f}'} | {ev.get('eval_seconds', '–')} |")
    return "\n".join(out)


def patchseg_table():
    rows = ["### Zero-shot patch segmentation on the demo corpus (`rils eval patchseg`)", "",
            "Each model pre-trained with the `demo` recipe (300 steps x 64 on the embedded shapes corpus, "
            "`vit_ti8_64`); every patch labelled by the argmax of p (Eq. 8) over class prompts, upsampled to "
            "pixels, scored against the renderer's masks on the 1,000 held-out images "
            "(`benchmarks/studies/patchseg/run.sh`). Classes: background + 6 shape kinds, or background + 6 colours.", "",
            "| method | shape mIoU | shape pixel acc. | colour mIoU | colour mean acc. | zero-shot top-1 shape / colour |",
            "|---|---:|---:|---:|---:|---:|"]
    found = False
    for m in ("clip", "mae_clip", "rils"):
        files = {t: PATCHSEG / f"patchseg_{m}_{t}.json" for t in ("shape", "color", "zeroshot_shape", "zeroshot_color")}
        if not all(f.exists() for f in files.values()):
            continue
        found = True
        d = {t: json.loads(f.read_text())["metrics"] for t, f in files.items()}
        rows.append(f"| {NAMES[m]} | {100 * d['shape']['miou']:.1f} | {100 * d['shape']['pixel_acc']:.1f} | "
                    f"{100 * d['color']['miou']:.1f} | {100 * d['color']['mean_acc']:.1f} | "
                    f"{100 * d['zeroshot_shape']['top1']:.1f} / {100 * d['zeroshot_color']['top1']:.1f} |")
    return "\n".join(rows) if found else ""


def plot(runs):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for m in [m for m in ORDER if m in runs]:
        curve = runs[m][min(runs[m])]["curve"]
        steps = [r["step"] for r in curve]
        if "clip_loss" in curve[0]:
            axes[0].plot(steps, [r["clip_loss"] for r in curve], label=NAMES[m])
            axes[1].plot(steps, [r["i2t_acc"] for r in curve], label=NAMES[m])
        for key, style in (("recon_loss", "-"), ("pixel_loss", "--"), ("ssl_loss", ":")):
            if key in curve[0]:
                axes[2].plot(steps, [r[key] for r in curve], style, label=f"{NAMES[m]}: {key}")
        if "matched_frac" in curve[0]:
            pass  # same quantity as i2t_acc for RILS
    for ax, title in zip(axes, ("contrastive loss (Eq. 6)", "in-batch image→text accuracy (= |C| / B for RILS)",
                                "reconstruction / pixel / SimCLR loss")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RES / "curves.png", dpi=110)


def main():
    runs = load_runs()
    plot(runs)
    body = tables(runs) + "\n\n![training curves, seed 0](../benchmarks/studies/compare/results/curves.png)\n\n" + patchseg_table() + "\n"
    doc = DOCS / "RESULTS.md"
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    text = doc.read_text() if doc.exists() else f"# Results\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{body}\n{end}{tail}")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
