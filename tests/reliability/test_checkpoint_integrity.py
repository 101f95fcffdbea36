"""Every checkpoint has a sha256 sidecar checked on load; a truncated or corrupted file is
refused with a message that says so and `resume=latest` falls back to the newest good one; loading
never runs pickled code."""
import hashlib
import os

import pytest
import torch

import rils
from rils.checkpoint import FORMAT, load_checkpoint, save_atomic, save_checkpoint, sidecar_path, verify_checkpoint
from rils.train.config import ConfigError, load_config
from rils.train.engine import find_resume, train

from .helpers import TINY, ckpt_step, records


def small_state(step=1):
    return {"format": FORMAT, "step": step, "w": torch.arange(20000, dtype=torch.float32)}


def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_sidecar_is_sha256sum_format(tmp_path):
    path = tmp_path / "a.pt"
    digest = save_atomic(small_state(), path)
    assert sidecar_path(path).read_text() == f"{digest}  a.pt\n"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert verify_checkpoint(path) and load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "a.pt.sha256"]   # no temporaries left


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "sidecar"])
def test_damage_is_detected_with_a_clear_message(tmp_path, damage):
    path = tmp_path / "a.pt"
    save_atomic(small_state(), path)
    if damage == "flip":
        flip_byte(path)                 # inside the tensor bytes: torch alone would not notice
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-1000])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        sidecar_path(path).write_text("not a digest\n")
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and len(message.splitlines()) == 1
    assert ("corrupted or truncated" in message) if damage != "sidecar" else ("a.pt.sha256 is corrupted" in message)


def test_a_checkpoint_without_sidecar_still_loads_and_a_truncated_one_does_not(tmp_path):
    path = tmp_path / "a.pt"
    torch.save(small_state(), path)              # an older checkpoint, or one copied without its sidecar
    assert not verify_checkpoint(path) and load_checkpoint(path)["step"] == 1
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="unreadable or corrupted"):
        load_checkpoint(path)


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):   # unpickling this would create the marker file
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "checkpoints" / "latest.pt"
    evil.parent.mkdir()
    save_atomic({"format": FORMAT, "step": 99, "state_dict": {"x": Payload(marker)}}, evil)  # valid sidecar
    assert verify_checkpoint(evil)              # the bytes are intact: the refusal is weights_only's
    with pytest.raises(ValueError, match="holds objects other than tensors"):
        load_checkpoint(evil)
    with pytest.raises(ValueError):
        rils.load_model(evil)
    with pytest.raises(ConfigError, match="refused"):    # resume=PATH: exit status 2
        find_resume(load_config("demo", [f"resume={evil}"]), evil.parent, print)
    save_atomic(small_state(step=5), evil.parent / "step_00000005.pt")
    found, path = find_resume(load_config("demo", ["resume=latest"]), evil.parent, lambda m: None)
    assert found["step"] == 5 and path.name == "step_00000005.pt"   # resume=latest passes it over
    assert not marker.exists()


def test_resume_latest_falls_back_to_the_newest_good_checkpoint(tmp_path, capsys):
    args = [*TINY, "train.checkpoint_every=5", f"output_dir={tmp_path}"]
    train(load_config("demo", [*args, "train.max_steps=20"]))
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.pt")) == [
        "latest.pt", "step_00000005.pt", "step_00000010.pt", "step_00000015.pt"]
    assert ckpt_step(ckpts / "latest.pt") == 20
    flip_byte(ckpts / "latest.pt")                                     # bit rot in the newest
    (ckpts / "step_00000015.pt").write_bytes((ckpts / "step_00000015.pt").read_bytes()[:4096])  # cut short
    capsys.readouterr()

    train(load_config("demo", [*args, "train.max_steps=30", "resume=latest"]))
    err = capsys.readouterr().err
    assert f"checkpoint {ckpts / 'latest.pt'} is corrupted or truncated" in err
    assert f"checkpoint {ckpts / 'step_00000015.pt'} is corrupted or truncated" in err
    assert f"resuming from {ckpts / 'step_00000010.pt'} (step 10)" in err
    assert verify_checkpoint(ckpts / "latest.pt") and ckpt_step(ckpts / "latest.pt") == 30
    assert [r["step"] for r in records(tmp_path)] == list(range(1, 31))   # steps 11-20 were redone, once


def test_latest_is_a_hard_link_of_the_periodic_file_and_has_its_own_sidecar(tmp_path):
    save_checkpoint(small_state(5), tmp_path, 5, periodic=True, keep=2)
    latest, step = tmp_path / "latest.pt", tmp_path / "step_00000005.pt"
    assert os.path.samefile(latest, step)
    assert sidecar_path(latest).read_text().split()[0] == sidecar_path(step).read_text().split()[0]
    assert sidecar_path(latest).read_text().split()[1] == "latest.pt"
    for s in (6, 7, 8):
        save_checkpoint(small_state(s), tmp_path, s, periodic=True, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest.pt", "latest.pt.sha256", "step_00000007.pt", "step_00000007.pt.sha256",
        "step_00000008.pt", "step_00000008.pt.sha256"]
    assert load_checkpoint(latest)["step"] == 8
