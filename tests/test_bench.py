"""`rils bench` measures what it says (no timing assertions: timings belong in benchmarks)."""
import pytest

from rils.bench import bench_data, run_bench


def test_bench_reports_flops_memory_and_ratios():
    r = run_bench("vit_nano8_32", methods=("clip", "rils"), batch=4, steps=1, warmup=0, repeats=1, device="cpu")
    assert set(r["results"]) == {"rils:clip", "rils:rils", "open_clip:clip"}
    for row in r["results"].values():
        assert row["images_per_sec"] > 0 and row["gflops_per_step"] > 0 and row["peak_mem_mb"] >= 0
    # same vision and text sizes: open_clip's CLIP and ours do the same arithmetic
    assert r["ratios"]["our_clip_over_open_clip_flops"] == pytest.approx(1.0, abs=0.01)
    # RILS adds a 25% encoder pass and a one-block decoder to CLIP's work
    assert 1.1 < r["ratios"]["rils_over_clip_flops"] < 1.7


def test_data_worker_rate():
    r = bench_data("vit_nano8_32", n=16)
    assert r["demo_render_transform_per_sec"] > 0 and r["jpeg_decode_transform_per_sec"] > 0
