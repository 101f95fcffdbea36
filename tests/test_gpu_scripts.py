"""The GPU scripts (benchmarks/perf/gpu.sh, gpu_dense.sh, benchmarks/studies/shapes/gpu_repro.sh) run their CPU
paths here, tiny: each still runs end to end and prints its table on a machine without a GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script, tmp_path, **env):
    e = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "out"), "RUNS": str(tmp_path / "runs"),
         "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(REPO / "benchmarks" / script)], env=e, capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def test_gpu_sh_cpu_path_benches_and_prints_the_table(tmp_path):
    proc = _run("perf/gpu.sh", tmp_path, GPU_SH_TINY="1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "bench_vit_nano8_32_b8_eager.json").read_text())
    assert {"rils:clip", "rils:rils", "open_clip:clip"} <= set(report["results"])
    assert "profiles" not in report      # the tables go to their own file, one section per bench
    profiles = (tmp_path / "out" / "profiles_vit_nano8_32.txt").read_text()
    assert profiles.startswith("#### vit_nano8_32 batch 8 eager\n")
    for name in ("rils:clip", "rils:rils", "open_clip:clip"):
        assert f"== {name}\n" in profiles
    assert profiles.count("aten::addmm") >= 3
    assert "| run | step | images/s | TFLOP/s | MFU (datasheet peak) | of measured matmul | peak MB |" in proc.stdout
    assert "rils_over_clip_step_time" in proc.stdout.splitlines()[-1]


def test_gpu_repro_cpu_path_prints_the_endpoints(tmp_path):
    """gpu_repro.sh, tiny on the CPU: both methods pre-trained, scored and fine-tuned for segmentation and
    detection, and every endpoint in the table."""
    proc = _run("studies/shapes/gpu_repro.sh", tmp_path, GPU_REPRO_TINY="1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for m in ("clip", "rils"):
        r = json.loads((tmp_path / "out" / f"repro_{m}.json").read_text())
        assert 0 <= r["zeroshot_top1"] <= 1 and 0 <= r["linear_top1"] <= 1 and r["method"] == m
        seg = json.loads((tmp_path / "out" / f"repro_{m}.segment.json").read_text())
        det = json.loads((tmp_path / "out" / f"repro_{m}.detect.json").read_text())
        assert seg["steps"] == 2 and 0 <= seg["metrics"]["mIoU"] <= 1
        assert det["steps"] == 2 and 0 <= det["metrics"]["segm"]["AP"] <= 1
    lines = proc.stdout.strip().splitlines()
    assert lines[-9].startswith("| endpoint | CLIP (2 steps) | RILS (2 steps) | RILS - CLIP |")
    assert lines[-4].startswith("| linear probe, shape |")
    assert lines[-3].startswith("| segmentation mIoU (fine-tuned) | 0.")
    assert lines[-1].startswith("| detection mask AP | 0.")


def test_gpu_dense_cpu_path_runs_both_protocols(tmp_path):
    """benchmarks/perf/gpu_dense.sh, tiny on the CPU: a checkpoint, the testbed, both fine-tunes, the table."""
    proc = _run("perf/gpu_dense.sh", tmp_path, GPU_DENSE_TINY="1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    seg = json.loads((tmp_path / "out" / "dense_segment_vit_nano8_32.json").read_text())
    det = json.loads((tmp_path / "out" / "dense_detect_vit_nano8_32.json").read_text())
    assert seg["steps"] == 2 and 0 <= seg["metrics"]["mIoU"] <= 1
    assert det["steps"] == 2 and 0 <= det["metrics"]["bbox"]["AP"] <= 1
    assert proc.stdout.strip().splitlines()[-1].startswith("| detect | 2 |")
