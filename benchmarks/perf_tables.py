"""Render benchmarks/results/*.json (from `rils bench`) as the tables of docs/PERFORMANCE.md, between
its `perf:begin/end` markers (the prose around them is kept). Usage: python benchmarks/perf_tables.py"""
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def step_table(report):
    rows = [f"**{report['preset']}, {report['precision']}, batch {report['batch']}** — {report['machine']}, "
            f"torch {report['torch']}, median of {report['steps'] * report['repeats']} steps "
            f"({report['repeats']} interleaved repetitions)", "",
            "| step | images/s | step time (ms) | GFLOP/step | achieved TFLOP/s | peak step memory (MB) |",
            "|---|---:|---:|---:|---:|---:|"]
    for r in report["results"].values():
        rows.append(f"| {r['name']} | {r['images_per_sec']:.1f} | {r['median_step_s'] * 1e3:.0f} | "
                    f"{r['gflops_per_step']:.1f} | {r['achieved_tflops']:.3f} | {r['peak_mem_mb']:.0f} |")
    return "\n".join(rows)


def main():
    out = []
    files = sorted(f for f in RESULTS.glob("*.json") if not f.name.startswith(("data_", "precision_")))
    for f in files:
        out += [f"### `{f.name}`", "", step_table(json.loads(f.read_text())), ""]
    goals = ["| goal | measured | file | met |", "|---|---:|---|---|"]
    for f in files:
        r = json.loads(f.read_text())
        rat = r["ratios"]
        if "rils_over_clip_step_time" in rat:
            v = rat["rils_over_clip_step_time"]
            goals.append(f"| RILS step ≤ 1.35 × CLIP step (FLOP ratio {rat['rils_over_clip_flops']:.2f}) | "
                         f"{v:.3f} | {f.name} | {'yes' if v <= 1.35 else 'no'} |")
        if "rils_over_clip_peak_mem" in rat:
            v = rat["rils_over_clip_peak_mem"]
            goals.append(f"| RILS peak memory ≤ 1.4 × CLIP | {v:.3f} | {f.name} | {'yes' if v <= 1.4 else 'no'} |")
        if "our_clip_over_open_clip_step_time" in rat:
            v = rat["our_clip_over_open_clip_step_time"]
            goals.append(f"| our CLIP step ≤ 0.9 × open_clip's | {v:.3f} | {f.name} | {'yes' if v <= 0.9 else 'no'} |")
    for f in sorted(RESULTS.glob("precision_*.json")):
        r = json.loads(f.read_text())
        for name, row in r["results"].items():
            v = row["bf16_speedup"]
            goals.append(f"| bf16 ≥ 2.5 × fp32 throughput (rils:{name}, {r['preset']}, interleaved) | {v:.2f} | "
                         f"{f.name} | {'yes' if v >= 2.5 else 'no'} |")
    data = sorted(RESULTS.glob("data_*.json"))
    for f in data:
        for method, r in json.loads(f.read_text()).items():
            out.append(f"Data worker ({f.name}, {method}, {r['preset']}): demo render + transform "
                       f"{r['demo_render_transform_per_sec']:.0f} images/s, JPEG decode + transform "
                       f"{r['jpeg_decode_transform_per_sec']:.0f} images/s per worker process.")
        out.append("")
    out = ["### Goals", "", *goals, ""] + out
    doc = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
    begin, end = "<!-- perf:begin -->", "<!-- perf:end -->"
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + begin + "\n" + "\n".join(out) + "\n" + end + tail)
    sys.stdout.write(f"wrote {doc}\n")


if __name__ == "__main__":
    main()
