"""The second registered study's scripts (benchmarks/studies/dense_budget/): the verdict rule on
synthetic results, the documented block equal to what the script prints from the kept files, and the
driver's tiny path end to end."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "benchmarks" / "studies" / "dense_budget"


def _verdict_module():
    spec = importlib.util.spec_from_file_location("dense_budget_verdict", STUDY / "verdict.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_run(res: Path, name: str, seg: float, box: float = 0.2, zs: float = 0.5, r1: float = 0.1,
               clip_acc: float = 0.7):
    (res / f"{name}.json").write_text(json.dumps({"zeroshot_top1": zs, "retrieval_i2t_r1": r1}))
    (res / f"{name}.segment.json").write_text(json.dumps({"metrics": {"mIoU": seg}}))
    for part in ("detect", "lowshot"):
        (res / f"{name}.{part}.json").write_text(json.dumps({"metrics": {"bbox": {"AP": box}, "segm": {"AP": box / 2}}}))
    (res / f"{name}.metrics.jsonl").write_text("".join(json.dumps({"step": 10 * i, "i2t_acc": clip_acc}) + "\n"
                                                       for i in range(1, 8)))


def test_verdicts_follow_the_registered_rule(tmp_path):
    """RILS above MAE on every seed holds, below CLIP on every seed is refuted, mixed signs are
    undecided; a seed whose CLIP in-batch accuracy is below 0.3 is left out; the trend claim is the
    paired difference of the two budgets' gaps."""
    v = _verdict_module()
    seg = {"clip": [0.40, 0.41, 0.42], "mae": [0.30, 0.31, 0.32], "mae_clip": [0.36, 0.30, 0.33],
           "rils": [0.35, 0.35, 0.35]}
    for m, vals in seg.items():
        for s, x in enumerate(vals):
            _write_run(tmp_path, f"{m}_600_s{s}", seg=x)
    for s in range(3):   # the gap RILS - CLIP narrows from about -0.06 to -0.01 on every seed
        _write_run(tmp_path, f"clip_2400_s{s}", seg=0.50)
        _write_run(tmp_path, f"rils_2400_s{s}", seg=0.49)
    claims = v.claims(v.Study(tmp_path))
    assert claims["RILS > MAE on segmentation mIoU (600 steps)"]["verdict"] == "holds"
    assert claims["RILS > CLIP on segmentation mIoU (600 steps)"]["verdict"] == "refuted"
    assert claims["RILS > MAE+CLIP on segmentation mIoU (600 steps)"]["verdict"] == "undecided"
    trend = claims["RILS − CLIP at 2,400 > at 600 steps on segmentation mIoU"]
    assert trend["verdict"] == "holds"
    assert trend["per_seed"] == pytest.approx([-0.01 - (0.35 - 0.40), -0.01 - (0.35 - 0.41), -0.01 - (0.35 - 0.42)])
    assert claims["RILS > CLIP on detection box AP (600 steps)"]["verdict"] == "undecided"   # all equal
    summary = v.summary(v.Study(tmp_path), claims)
    assert "(3 of 3 seeds each; docs/RESULTS.md gives each claim's) the twelve dense claims read: 1 holds, 1 refuted, 10 undecided." in summary
    assert "segmentation mIoU CLIP −0.060, MAE +0.040, MAE+CLIP +0.020;" in summary
    assert "segmentation mIoU −0.060 to −0.010 (seeds 0, 1 and 2 mean; holds)" in summary

    _write_run(tmp_path, "clip_600_s2", seg=0.42, clip_acc=0.2)      # seed 2 no longer tests the claims
    claims = v.claims(v.Study(tmp_path))
    assert claims["RILS > MAE on segmentation mIoU (600 steps)"]["seeds"] == [0, 1]
    assert claims["RILS > MAE on segmentation mIoU (600 steps)"]["verdict"] == "holds (only 2 seeds)"
    assert claims["RILS − CLIP at 2,400 > at 600 steps on segmentation mIoU"]["seeds"] == [0, 1]
    text, _ = v.render(v.Study(tmp_path))
    assert "| 2 | 0.200 (not testing the claim) | 0.700 (valid) |" in text


def test_results_md_block_is_what_the_script_prints_from_the_kept_files():
    """Every number of the study's generated block in docs/RESULTS.md is reproduced by verdict.py
    from benchmarks/studies/dense_budget/results/."""
    v = _verdict_module()
    text, _ = v.render(v.Study(STUDY / "results"))
    doc = (REPO / "docs" / "RESULTS.md").read_text()
    block = doc.split(v.BEGIN, 1)[1].split(v.END, 1)[0]
    assert block == "\n" + text


def test_readme_summary_is_what_the_script_prints_from_the_kept_files():
    """README's sentences on the second round are verdict.py's summary of the kept files, so they
    cannot lag behind the results."""
    v = _verdict_module()
    readme = (REPO / "README.md").read_text()
    block = readme.split(v.SUMMARY_BEGIN, 1)[1].split(v.SUMMARY_END, 1)[0]
    st = v.Study(STUDY / "results")
    assert block == "\n" + v.summary(st, v.claims(st))


def test_driver_tiny_path_writes_every_part_and_skips_what_exists(tmp_path):
    """run.sh on one run, shrunk: pre-training, the shapes endpoints, segmentation, detection and
    low-shot detection each leave their JSON and a log line; a second call redoes nothing; with the
    checkpoint gone and a part missing, the whole run is made again (all parts from one checkpoint)."""
    res = tmp_path / "res"
    env = {**os.environ, "PY": sys.executable, "RUNS": str(tmp_path / "runs"), "RES": str(res),
           "DATA": str(tmp_path / "data"), "PREP": "--train 20 --val 4", "OMP_NUM_THREADS": "1",
           "SEG_STEPS": "2", "DET_STEPS": "2", "LOWSHOT_STEPS": "1",
           "SHAPES_EVAL_TRAIN_SAMPLES": "16", "SHAPES_EVAL_VAL_SAMPLES": "16",
           "EXTRA": "model.preset=vit_nano8_32 train.max_steps=2 data.num_samples=32 train.batch_size=4 "
                    "train.warmup_steps=1 train.device=cpu train.precision=fp32 data.workers=0"}
    cmd = ["bash", str(STUDY / "run.sh"), "clip_600_s0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for part in ("json", "metrics.jsonl", "segment.json", "detect.json", "lowshot.json"):
        assert (res / f"clip_600_s0.{part}").is_file(), part
    low = json.loads((res / "clip_600_s0.lowshot.json").read_text())
    assert low["train_images"] == 2 and low["settings"]["seed"] == 0
    assert [json.loads(x)["part"] for x in (res / "log.jsonl").read_text().splitlines()] == \
        ["pretrain", "shapes_eval", "segment", "detect", "lowshot"]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 0 and len((res / "log.jsonl").read_text().splitlines()) == 5
    bad = subprocess.run(["bash", str(STUDY / "run.sh"), "clip_700_s0"], env=env, capture_output=True, text=True,
                         cwd=REPO)
    assert bad.returncode == 2 and "unknown run clip_700_s0" in bad.stdout

    # a fresh machine: the checkpoint is gone and a part is missing, so the run is made again, whole
    (tmp_path / "runs" / "clip_600_s0" / "checkpoints" / "latest.pt").unlink()
    (res / "clip_600_s0.lowshot.json").unlink()
    redo = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert redo.returncode == 0, redo.stdout[-2000:] + redo.stderr[-2000:]
    assert "checkpoint lost with parts left" in redo.stdout
    assert [json.loads(x)["part"] for x in (res / "log.jsonl").read_text().splitlines()][5:] == \
        ["checkpoint_lost_redo", "pretrain", "shapes_eval", "segment", "detect", "lowshot"]
