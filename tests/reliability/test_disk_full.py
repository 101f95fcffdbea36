"""A checkpoint that cannot be written (disk full, read-only or vanished folder) leaves the
previous one byte-identical, and the error names the path; in training it stops the run (exit 1, one
line) and `resume=latest` continues from the previous checkpoint. Tests run as root, which ignores
permissions, so the failures are injected (ENOSPC mid-write, EROFS at the rename, ...)."""
import errno
import os

import pytest
import torch

from rils import checkpoint as C
from rils.cli import main
from rils.train.config import load_config
from rils.train.engine import RunAborted, train

from .helpers import TINY, ckpt_step, records


def state(step):
    return {"format": C.FORMAT, "step": step, "w": torch.full((50000,), float(step))}


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def fail_on(monkeypatch, module, name, when, code):
    real = getattr(module, name)

    def fake(*args, **kwargs):
        if when(*args):
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, fake)


def half_write_then_enospc(obj, fh, *a, **k):
    fh.write(b"PK\x03\x04" + b"\0" * 5000)     # a disk fills up mid-file
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


FAULTS = {
    "enospc_mid_write": lambda mp: mp.setattr(C.torch, "save", half_write_then_enospc),
    "eio_at_fsync": lambda mp: fail_on(mp, os, "fsync", lambda fd: True, errno.EIO),
    "erofs_at_rename": lambda mp: fail_on(mp, os, "replace", lambda src, dst: "step_00000010" in str(dst), errno.EROFS),
    "enospc_in_sidecar": lambda mp: fail_on(mp, os, "replace", lambda src, dst: str(dst).endswith(".pt.sha256")
                                            and "step_00000010" in str(dst), errno.ENOSPC),
    "exdev_at_link": lambda mp: fail_on(mp, os, "link", lambda src, dst: True, errno.EXDEV),
    "erofs_at_latest": lambda mp: fail_on(mp, os, "replace", lambda src, dst: str(dst).endswith("latest.pt"), errno.EROFS),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failed_save_changes_nothing_and_names_the_path(tmp_path, monkeypatch, fault):
    C.save_checkpoint(state(5), tmp_path, 5, periodic=True, keep=3)
    before = snapshot(tmp_path)
    with monkeypatch.context() as mp:
        FAULTS[fault](mp)
        with pytest.raises(OSError) as info:
            C.save_checkpoint(state(10), tmp_path, 10, periodic=True, keep=3)
    message = str(info.value)
    assert f"could not write checkpoint {tmp_path}/" in message and len(message.splitlines()) == 1
    assert snapshot(tmp_path) == before                     # byte-identical, and no temporaries left
    assert C.load_checkpoint(tmp_path / "latest.pt")["step"] == 5


def test_training_stops_on_a_full_disk_and_resumes_from_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpts = tmp_path / "checkpoints"
    real_save, calls, before = C.torch.save, {"n": 0}, {}

    def save(obj, fh, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:             # the periodic save at step 10 (its temporary file aside)
            before.update((k, v) for k, v in snapshot(ckpts).items() if not k.endswith(".tmp"))
            half_write_then_enospc(obj, fh)
        return real_save(obj, fh, *a, **k)

    args = [*TINY, "train.checkpoint_every=5", "train.max_steps=15", f"output_dir={tmp_path}"]
    with monkeypatch.context() as mp:
        mp.setattr(C.torch, "save", save)
        with pytest.raises(RunAborted) as info:
            train(load_config("demo", args))
    message = str(info.value)
    assert len(message.splitlines()) == 1 and info.value.code == message
    assert f"could not write checkpoint {ckpts / 'step_00000010.pt'}: No space left on device" in message
    assert f"the previous checkpoint {ckpts / 'step_00000005.pt'} (step 5) is intact" in message
    assert snapshot(ckpts) == before and ckpt_step(ckpts / "latest.pt") == 5

    train(load_config("demo", [*args, "resume=latest"]))       # space freed: continue
    assert ckpt_step(ckpts / "latest.pt") == 15
    assert [r["step"] for r in records(tmp_path)] == list(range(1, 16))


def test_an_output_dir_that_cannot_be_made_is_a_config_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code = main(["pretrain", "-c", "demo", *TINY, f"output_dir={tmp_path / 'file' / 'run'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("rils: error: output_dir: cannot write the run folder") and str(tmp_path / "file") in err
