"""Bad input stops `pretrain` with one line and exit status 2 and leaves no half-made run
folder: `logging.wandb=true` with neither a W&B API key nor offline mode is refused before the folder
is made, and a start
refused after making the folder (a missing CSV, data too small for a step) takes back what it made,
never what was there before. No test touches the network: the check only reads files and the
environment."""
import os
import stat

import pytest

from rils.cli import main
from rils.train.metrics import wandb_login_problem

from .helpers import TINY

wandb = pytest.importorskip("wandb")


@pytest.fixture
def no_wandb_login(monkeypatch, tmp_path):
    """A machine where nobody ran `wandb login`: no WANDB_* variable, an empty home, no .netrc, no
    settings files (global or in the working directory)."""
    for key in list(os.environ):
        if key.startswith("WANDB_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
    monkeypatch.chdir(tmp_path)
    return home


def test_wandb_without_key_or_offline_mode_is_one_line_exit_2_and_makes_no_folder(no_wandb_login, tmp_path,
                                                                                  capsys):
    """The refusal names both ways out (log in, or offline mode) and comes before the run folder."""
    out = tmp_path / "runs" / "w"
    code = main(["pretrain", "-c", "demo", *TINY, "train.max_steps=1", "logging.wandb=true", f"output_dir={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("rils: error: logging.wandb: true, but W&B has no API key")
    assert "wandb login" in err[0] and "WANDB_API_KEY" in err[0] and "WANDB_MODE=offline" in err[0]
    assert not (tmp_path / "runs").exists()


def _netrc(home, host):
    path = home / ".netrc"
    path.write_text(f"machine {host}\n  login user\n  password {'a' * 40}\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("how", ["WANDB_MODE=offline", "WANDB_MODE=dryrun", "WANDB_MODE=disabled",
                                 "WANDB_API_KEY", "netrc", "wandb offline (global settings)",
                                 "wandb offline (workspace settings)"])
def test_every_way_wandb_starts_without_a_prompt_is_accepted(no_wandb_login, tmp_path, monkeypatch, how):
    """What wandb itself reads: the mode (environment or the settings file `wandb offline` writes), an
    API key in the environment, or the .netrc entry `wandb login` writes for W&B's host."""
    from urllib.parse import urlsplit

    assert wandb_login_problem() is not None
    if how.startswith("WANDB_MODE="):
        monkeypatch.setenv("WANDB_MODE", how.split("=")[1])
    elif how == "WANDB_API_KEY":
        monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    elif how == "netrc":
        _netrc(no_wandb_login, urlsplit(wandb.Settings().base_url).netloc)
    else:
        folder = no_wandb_login / "wandb-config" if "global" in how else tmp_path / "wandb"
        folder.mkdir()
        (folder / "settings").write_text("[default]\nmode = offline\n")
    assert wandb_login_problem() is None


def test_a_missing_csv_leaves_no_run_folder(tmp_path, capsys):
    """data.source=csv with a path that does not exist: one line, exit 2, and neither output_dir nor
    the parent folders this start made remain (it left config.yaml and checkpoints/ before)."""
    out = tmp_path / "runs" / "a" / "run"
    code = main(["pretrain", "-c", "demo", *TINY, "data.source=csv", f"data.path={tmp_path / 'nope.csv'}",
                 f"output_dir={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"rils: error: data.path: CSV file not found: {tmp_path / 'nope.csv'}"]
    assert not (tmp_path / "runs").exists()


def test_a_refused_start_keeps_everything_that_was_there(tmp_path, capsys):
    """The clean-up takes back only what this start made: a folder that existed keeps its files (a
    note, an empty checkpoints/, and a config.yaml of a run stopped before its first step, which the
    start overwrote and gives back byte for byte), and is not removed. Data too small for one step is
    found after the folder is made."""
    kept = tmp_path / "kept"
    (kept / "checkpoints").mkdir(parents=True)
    (kept / "notes.txt").write_text("mine\n")
    (kept / "config.yaml").write_text("method: rils\n")
    fresh = tmp_path / "fresh"
    for out in (kept, fresh):
        code = main(["pretrain", "-c", "demo", *TINY, "data.num_samples=4", "train.batch_size=8",
                     f"output_dir={out}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1].startswith("rils: error: data: 4 samples do not fill one step"), err
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*")) == ["checkpoints", "config.yaml",
                                                                               "notes.txt"]
    assert (kept / "notes.txt").read_text() == "mine\n" and (kept / "config.yaml").read_text() == "method: rils\n"
    assert not fresh.exists()
