"""Render benchmarks/perf/results/*.json (from `rils bench` and benchmarks/perf/compile_check.py) as the tables
of docs/PERFORMANCE.md, between its `perf:begin/end` markers (the prose around them is kept): one
section per kind of machine (the instruction set is in each report's machine line), the goals of
the performance issue with their bootstrap intervals and verdicts first.
Usage: python benchmarks/perf/tables.py"""
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("results")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from rils.bench import verdict  # noqa: E402  (met / missed / undecided from an interval)

FLOP_SLACK = 1.05      # RILS step <= 1.05 x (its FLOP ratio) x CLIP step
MEMORY_GOAL = 1.3      # RILS peak step memory <= 1.3 x CLIP's
OPEN_CLIP_GOAL = 0.9   # our CLIP step <= 0.9 x open_clip's
DATA_GOAL = 3.0        # one data worker >= 3 x the step's images/s
MFU_GOAL = 0.45        # RILS vit_b16 bf16 model FLOPs utilisation on an H200 (datasheet bf16 peak)


def _load(path):
    return json.loads(path.read_text())


def _machine_kind(report) -> str:
    return report.get("machine", "?")


def _iv(interval) -> str:
    return f"{interval['median']:.3f} [{interval['lo']:.3f}, {interval['hi']:.3f}]"


# A run's non-default settings: its report key, then its name in a table heading and in a goal row.
_SETTINGS = (("compile", "torch.compile", "torch.compile"),
             ("grad_checkpointing", "model.grad_checkpointing", "grad checkpointing"),
             ("masked_grad_checkpointing", "model.masked_grad_checkpointing", "masked-branch grad checkpointing"))


def _settings(report, column: int) -> str:
    mode = report.get("compile_mode") or "default"
    return "".join(f", {names[column]}" + (f" ({mode})" if key == "compile" and mode != "default" else "")
                   for key, *names in _SETTINGS if report.get(key))


def step_table(report) -> str:
    iv = report.get("intervals", {})
    head = (f"**{report['preset']}, {report['precision']}, batch {report['batch']}{_settings(report, 0)}** — "
            f"median of {report['steps']} steps x {report['repeats']} interleaved repetitions "
            f"({report.get('stopped_because', '')})" + (f", at {report['commit']}" if report.get("commit") else ""))
    gpu = report.get("peak_tflops") is not None
    rows = [head, "", "| step | images/s | step time (ms) | GFLOP/step | achieved TFLOP/s | peak step memory (MB) |"
            + (" MFU |" if gpu else ""), "|---|---:|---:|---:|---:|---:|" + ("---:|" if gpu else "")]
    for r in report["results"].values():
        rows.append(f"| {r['name']} | {r['images_per_sec']:.1f} | {r['median_step_s'] * 1e3:.0f} | "
                    f"{r['gflops_per_step']:.1f} | {r['achieved_tflops']:.3f} | {r['peak_mem_mb']:.0f} |"
                    + (f" {r['mfu']:.1%} |" if gpu else ""))
    if iv:
        rows += ["", "Step-time ratios, median [bootstrap 95 % interval]: " +
                 "; ".join(f"{k.replace('_step_time', '').replace('_', ' ')} {_iv(v)}" for k, v in iv.items())]
    return "\n".join(rows)


def goals_for(report, name) -> list[str]:
    rows, rat, iv = [], report["ratios"], report.get("intervals", {})
    where = f"{report['preset']} {report['precision']} b{report['batch']}{_settings(report, 1)}"
    rils = report["results"].get("rils:rils", {})
    if rils.get("mfu") is not None:
        rows.append(f"| RILS MFU ≥ {MFU_GOAL:.0%} (of the {report['peak_tflops']:.0f} TFLOP/s bf16 datasheet peak) "
                    f"| {where} | {rils['mfu']:.1%} ({rils['achieved_tflops']:.0f} TFLOP/s) | "
                    f"{'met' if rils['mfu'] >= MFU_GOAL else 'missed'} | {name} |")
    if "rils_over_clip_step_time" in iv:
        goal = FLOP_SLACK * rat["rils_over_clip_flops"]
        v = iv["rils_over_clip_step_time"]
        rows.append(f"| RILS step ≤ {FLOP_SLACK} × FLOP ratio ({rat['rils_over_clip_flops']:.2f}) = {goal:.2f} × CLIP "
                    f"| {where} | {_iv(v)} | {verdict(v, goal)} | {name} |")
    if "rils_over_clip_peak_mem" in rat:
        v = rat["rils_over_clip_peak_mem"]
        reps = report.get("memory_ratios_per_process", {}).get("rils_over_clip_peak_mem")
        if reps and len(reps) > 1:   # fresh processes, interleaved: met / missed only if every one agrees
            lo, hi = min(reps), max(reps)
            rows.append(f"| RILS peak memory ≤ {MEMORY_GOAL} × CLIP | {where} | {v:.3f} [{lo:.3f}, {hi:.3f}] "
                        f"(range of {len(reps)} processes each) | {verdict({'lo': lo, 'hi': hi}, MEMORY_GOAL)} | {name} |")
        else:
            rows.append(f"| RILS peak memory ≤ {MEMORY_GOAL} × CLIP | {where} | {v:.3f} (one step each) | "
                        f"{'met' if v <= MEMORY_GOAL else 'missed'} | {name} |")
    if "our_clip_over_open_clip_step_time" in iv:
        v = iv["our_clip_over_open_clip_step_time"]
        # before open_clip's step was compiled too, `rils bench --compile` compiled ours only: no verdict
        apart = report.get("compile") and not report.get("open_clip_compiled")
        state = "not comparable (ours compiled, open_clip eager)" if apart else verdict(v, OPEN_CLIP_GOAL)
        rows.append(f"| our CLIP step ≤ {OPEN_CLIP_GOAL} × open_clip's | {where} | {_iv(v)} | {state} | {name} |")
    return rows


def render(results: Path = RESULTS) -> str:
    """The markdown between the markers, from the JSON files in `results`."""
    sections: dict[str, dict] = {}

    def section(report):
        return sections.setdefault(_machine_kind(report), {"goals": [], "body": []})

    steps = {}
    for f in sorted(results.glob("*.json")):
        r = _load(f)
        if f.name.startswith(("cpu_", "gpu_")) and "results" in r and "ratios" in r:
            s = section(r)
            steps[f.name] = r
            s["goals"] += goals_for(r, f.name)
            s["body"] += [f"#### `{f.name}`", "", step_table(r), ""]
    # benchmarks/perf/gpu.sh's runs, one folder per run (device and commit in its name)
    for f in sorted(results.glob("gpu/*/bench_*.json")):
        r, name = _load(f), f"gpu/{f.parent.name}/{f.name}"
        r.setdefault("compile", "_compile" in f.name)   # reports before the key: gpu.sh names the file
        s = section(r)
        s["goals"] += goals_for(r, name)
        s["body"] += [f"#### `{name}`", "", step_table(r), ""]
    for f in sorted(results.glob("gpu/*/device.json")):
        d = _load(f)
        if d.get("bf16_matmul_tflops_measured"):
            section({"machine": d["name"]})["body"] += [
                f"Device ({f.parent.name}): {d['name']}, {d['multiprocessors']} multiprocessors; an 8192³ bf16 matmul on "
                f"random data ran at {d['bf16_matmul_tflops_measured']:.0f} TFLOP/s (the MFU column is against the "
                f"datasheet's 989).", ""]
    for f in sorted(results.glob("compile_*.json")):
        r = _load(f)
        s = section(r)
        if f.name == "compile_check.json":
            for m, c in r["results"].items():
                s["goals"].append(f"| `train.compile=true` resumes exactly ({m}) | demo recipe, {r['precision']} | "
                                  f"max loss diff vs eager {c['max_abs_loss_diff_compiled_vs_eager']:.2e} | "
                                  f"{'met' if c['exact_resume'] else 'missed'} | {f.name} |")
        else:
            lines = [f"#### `{f.name}`", "", f"**torch.compile against eager, {r['preset']}, {r['precision']}, "
                     f"batch {r['batch']}**", "", "| method | speed-up, median [95 % interval] | compile time (s) |",
                     "|---|---:|---:|"]
            for m, c in r["results"].items():
                lo, hi = c["speedup_interval"]
                lines.append(f"| {m} | {c['speedup']:.3f} [{lo:.3f}, {hi:.3f}] | {c['compile_seconds']:.0f} |")
            s["body"] += [*lines, ""]
    for f in sorted(results.glob("data_*.json")):
        r = _load(f)
        for method, d in r.items():
            if not isinstance(d, dict) or "preset" not in d:
                continue
            # the step rate of the same preset on the same machine, if measured
            same = [s for s in steps.values() if s["preset"] == d["preset"] and s.get("machine") == d.get("machine")
                    and f"rils:{method}" in s["results"]]
            s = section(d)
            rate = d["demo_render_transform_per_sec"]
            line = (f"Data worker ({f.name}, {method}, {d['preset']}): demo render + transform {rate:.0f} images/s, "
                    f"JPEG decode + transform {d['jpeg_decode_transform_per_sec']:.0f} images/s per worker process.")
            s["body"] += [line, ""]
            for st in same:
                step_rate = st["results"][f"rils:{method}"]["images_per_sec"]
                worst = min(rate, d["jpeg_decode_transform_per_sec"])
                s["goals"].append(f"| one data worker ≥ {DATA_GOAL:g} × the step's images/s ({method}) | "
                                  f"{d['preset']} {st['precision']} b{st['batch']} | {worst / step_rate:.2f} "
                                  f"({worst:.0f} vs {step_rate:.0f} images/s) | "
                                  f"{'met' if worst >= DATA_GOAL * step_rate else 'missed'} | {f.name} |")
    for f in sorted(results.glob("precision_*.json")):
        r = _load(f)
        s = section(r)
        for name, row in r["results"].items():
            s["body"].append(f"bf16 against fp32 ({f.name}, rils:{name}, {r['preset']}, interleaved): "
                             f"{row['bf16_speedup']:.2f}× the images/s.")
        s["body"].append("")

    out = []
    for machine, s in sections.items():
        out += [f"### {machine}", ""]
        if s["goals"]:
            out += ["| goal | setting | measured | verdict | file |", "|---|---|---|---|---|", *s["goals"], ""]
        out += s["body"]
    return "\n".join(out)


def main():
    doc = Path(__file__).resolve().parents[2] / "docs" / "PERFORMANCE.md"
    begin, end = "<!-- perf:begin -->", "<!-- perf:end -->"
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + begin + "\n" + render() + "\n" + end + tail)
    sys.stdout.write(f"wrote {doc}\n")


if __name__ == "__main__":
    main()
