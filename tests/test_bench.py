"""`rils bench` measures what it says (no timing assertions: timings belong in benchmarks)."""
import pytest

from rils.bench import bench_data, format_table, ratio_interval, run_bench, verdict


def test_bench_reports_flops_memory_and_ratios():
    r = run_bench("vit_nano8_32", methods=("clip", "rils"), batch=4, steps=1, warmup=0, repeats=2, device="cpu",
                  target_half_width=None, memory_repeats=2)
    assert set(r["results"]) == {"rils:clip", "rils:rils", "open_clip:clip"}
    assert r["repeats"] == 2 and set(r["intervals"]) == {"rils_over_clip_step_time", "our_clip_over_open_clip_step_time"}
    for row in r["results"].values():
        assert row["images_per_sec"] > 0 and row["gflops_per_step"] > 0 and row["peak_mem_mb"] >= 0
    # same vision and text sizes, the same arithmetic but for our text tower's last block, which
    # runs at the end-of-text token only (at this preset: 2 text layers, 16 positions)
    assert 0.7 < r["ratios"]["our_clip_over_open_clip_flops"] < 0.95
    # RILS adds a 25% encoder pass and a one-block decoder to CLIP's work
    assert 1.1 < r["ratios"]["rils_over_clip_flops"] < 1.7
    # memory: each repetition a fresh process per method, paired into RILS/CLIP ratios
    reps = r["memory_ratios_per_process"]["rils_over_clip_peak_mem"]
    assert len(reps) == 2 and all(x > 0 for x in reps)
    assert "per process:" in format_table(r)


def test_data_worker_rate():
    r = bench_data("vit_nano8_32", n=16)
    assert r["demo_render_transform_per_sec"] > 0 and r["jpeg_decode_transform_per_sec"] > 0


def test_ratio_intervals_pair_the_interleaved_repetitions():
    # b takes 1.0 s; a takes 1.2 s, then 1.5 s when the machine gets busy: both slow down together
    a = [[1.2, 1.2], [1.2, 1.2], [1.5, 1.5], [1.5, 1.5]]
    b = [[1.0, 1.0], [1.0, 1.0], [1.25, 1.25], [1.25, 1.25]]
    ci = ratio_interval(a, b)
    assert ci["median"] == pytest.approx(1.2) and ci["lo"] == pytest.approx(1.2) and ci["hi"] == pytest.approx(1.2)
    noisy = ratio_interval([[1.1], [1.3], [1.2], [1.4], [1.0]], [[1.0]] * 5)
    assert noisy["lo"] < 1.2 < noisy["hi"] and noisy["half_width"] > 0.03


def test_a_goal_inside_the_interval_is_undecided():
    assert verdict({"lo": 1.30, "hi": 1.40}, goal=1.42) == "met"
    assert verdict({"lo": 1.38, "hi": 1.46}, goal=1.42) == "undecided"
    assert verdict({"lo": 1.45, "hi": 1.50}, goal=1.42) == "missed"


def _report(machine, lo, hi, flops=1.3, mem=1.2):
    iv = {"median": (lo + hi) / 2, "lo": lo, "hi": hi}
    step = {"name": "rils:rils", "images_per_sec": 10.0, "median_step_s": 0.1, "gflops_per_step": 1.0,
            "achieved_tflops": 0.01, "peak_mem_mb": 100.0}
    return {"preset": "vit_ti8_64", "precision": "fp32", "batch": 64, "steps": 3, "repeats": 4, "machine": machine,
            "results": {"rils:rils": step}, "intervals": {"rils_over_clip_step_time": iv},
            "ratios": {"rils_over_clip_flops": flops, "rils_over_clip_peak_mem": mem}}


def test_performance_tables_split_machines_and_state_verdicts(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("perf_tables", Path(__file__).parents[1] / "benchmarks" / "perf" / "tables.py")
    perf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf)
    # goal 1.05 x 1.3 = 1.365: inside [1.30, 1.40] -> undecided; [1.20, 1.30] -> met; memory 1.35 -> missed
    (tmp_path / "cpu_native_x.json").write_text(json.dumps(_report("CPU, 2 threads, AVX512 (bf16 native)", 1.30, 1.40)))
    (tmp_path / "cpu_avx2_x.json").write_text(json.dumps(_report("CPU, 2 threads, AVX2 (bf16 emulated)", 1.20, 1.30,
                                                                 mem=1.35)))
    md = perf.render(tmp_path)
    sections = {part.split("\n", 1)[0]: part for part in md.split("### ")[1:]}
    native, avx2 = sections["CPU, 2 threads, AVX512 (bf16 native)"], sections["CPU, 2 threads, AVX2 (bf16 emulated)"]
    assert "1.37 × CLIP | vit_ti8_64 fp32 b64 | 1.350 [1.300, 1.400] | undecided" in native
    assert "1.250 [1.200, 1.300] | met" in avx2
    assert "RILS peak memory ≤ 1.3 × CLIP | vit_ti8_64 fp32 b64 | 1.350 (one step each) | missed" in avx2


def test_reports_name_the_commit_they_ran_at():
    import subprocess
    from pathlib import Path

    from rils.bench import source_commit
    src = Path(__file__).resolve().parents[1] / "src"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True)
    except OSError:
        pytest.skip("no git here")
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert source_commit().split("+")[0] == head.stdout.strip()


def test_gpu_steps_are_queued_back_to_back_and_timed_between_events(monkeypatch):
    """On a GPU `_timed` waits for the device once per repetition, not after every step (the engine
    never waits per step); each step's time runs from the event before it to the event after it.
    Stand-ins for CUDA events and synchronisation record what happens."""
    import torch

    from rils import bench

    log = []

    class Event:
        def __init__(self, enable_timing=False):
            self.at = None

        def record(self):
            self.at = len(log)
            log.append("event")

        def elapsed_time(self, end):      # ms: here, one per step between the two events
            return 1000.0 * sum(entry == "step" for entry in log[self.at:end.at])

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: log.append("sync"))
    times = bench._timed(lambda batch: log.append("step"), None, torch.device("cuda"), steps=3)
    assert log == ["sync", "event", "step", "event", "step", "event", "step", "event", "sync"]
    assert times == [1.0, 1.0, 1.0]


def test_the_open_clip_side_runs_our_activations():
    """`rils bench`'s open_clip CLIP runs each tower's activation as ours: GELU in its ViT (our trunk is
    timm's) and the preset's QuickGELU in its text tower (open_clip's quick_gelu flag would switch
    both), so the timing ratio compares like with like."""
    import torch
    from open_clip.transformer import QuickGELU

    from rils.bench import OpenClipStep

    step = OpenClipStep("vit_nano8_32", "cpu")
    assert {type(b.mlp.gelu) for b in step.module.transformer.resblocks} == {QuickGELU}
    assert {type(b.mlp.gelu) for b in step.module.visual.transformer.resblocks} == {torch.nn.GELU}
