"""A rerun never overwrites an earlier run by accident (`overwrite=true` moves it
aside), a file that is not a checkpoint says so, and checkpoints and exports are readable by the group
(the umask decides, as for any file)."""
import os
import stat

import pytest

from rils.checkpoint import load_checkpoint, save_atomic, sidecar_path
from rils.cli import main
from rils.train.config import ConfigError, load_config
from rils.train.engine import train

from .helpers import TINY, ckpt_step, records

RUN = [*TINY, "train.max_steps=3", "train.checkpoint_every=2"]


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "tb" not in p.parts}


@pytest.fixture
def earlier_run(tmp_path):
    out = tmp_path / "x"
    train(load_config("demo", [*RUN, f"output_dir={out}"]))
    return out


def test_a_rerun_without_resume_is_refused_and_changes_nothing(earlier_run, capsys):
    before = snapshot(earlier_run)
    with pytest.raises(ConfigError, match=r"already holds a run at step 3: pass resume=latest to continue "
                                          r"or overwrite=true to start over"):
        train(load_config("demo", [*RUN, f"output_dir={earlier_run}"]))
    assert snapshot(earlier_run) == before                     # metrics.jsonl and latest.pt untouched
    code = main(["pretrain", "-c", "demo", *RUN, f"output_dir={earlier_run}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [(f"rils: error: {earlier_run} already holds a run at step 3: pass resume=latest "
                                  f"to continue or overwrite=true to start over")]


def test_overwrite_moves_the_old_run_aside(earlier_run):
    before = snapshot(earlier_run)
    train(load_config("demo", [*RUN, "train.max_steps=2", "overwrite=true", f"output_dir={earlier_run}"]))
    aside = [p for p in earlier_run.parent.iterdir() if p.name.startswith("x.old-")]
    assert len(aside) == 1 and snapshot(aside[0]) == before    # moved, byte for byte, never deleted
    assert [r["step"] for r in records(earlier_run)] == [1, 2]  # the new run starts from scratch
    assert ckpt_step(earlier_run / "checkpoints" / "latest.pt") == 2
    with pytest.raises(ConfigError, match="set only one"):
        train(load_config("demo", [*RUN, "overwrite=true", "resume=latest", f"output_dir={earlier_run}"]))


def test_a_folder_without_checkpoints_or_metrics_is_free(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "config.yaml").write_text("method: rils\n")   # stopped before its first step
    for name, extra in (("empty", []), ("stopped", []), ("fresh", ["resume=latest"])):
        train(load_config("demo", [*RUN, "train.max_steps=1", f"output_dir={tmp_path / name}", *extra]))
        assert ckpt_step(tmp_path / name / "checkpoints" / "latest.pt") == 1


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to buy milk\n")
    with pytest.raises(ValueError, match=r"notes.txt is not a rils checkpoint \(not a torch file\)$"):
        load_checkpoint(notes)
    for argv in (["eval", "zeroshot", "--checkpoint", str(notes), "--dataset", "demo-shapes"],
                 ["export", "--checkpoint", str(notes), "--format", "timm", "--out", str(tmp_path / "t.safetensors")],
                 ["pretrain", "-c", "demo", *TINY, f"resume={notes}", f"output_dir={tmp_path / 'run'}"]):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if not line.startswith("[rils]")]     # the run's own log lines aside
        assert code == 2 and len(errors) == 1, err
        assert errors[0].endswith(f"{notes} is not a rils checkpoint (not a torch file)") and "rror:" in errors[0]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)], ids=["umask022", "umask027"])
def test_checkpoints_and_exports_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        # GELU text: vit_nano8_32 exports to open_clip only so (rils.export.native_tower_check)
        latest = train(load_config("demo", [*RUN, "model.quick_gelu=false", f"output_dir={out}"]))
        files = [*out.glob("checkpoints/*.pt"), *out.glob("checkpoints/*.sha256")]
        save_atomic({"format": "x"}, tmp_path / "a.pt")
        files += [tmp_path / "a.pt", sidecar_path(tmp_path / "a.pt")]
        assert main(["export", "--checkpoint", str(latest), "--format", "timm", "--no-verify",
                     "--out", str(tmp_path / "trunk.safetensors")]) == 0
        assert main(["export", "--checkpoint", str(latest), "--format", "open_clip", "--no-verify",
                     "--out", str(tmp_path / "clip")]) == 0
        files += [tmp_path / "trunk.safetensors", *(tmp_path / "clip").iterdir()]
    finally:
        os.umask(old)
    assert len(files) >= 8
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: oct(mode) for f in files}
