"""logging.wandb: the metrics.jsonl values and the config reach W&B (offline mode, no network), and a
resumed run continues the same W&B run. Skipped when wandb is not installed (it is in `.[test]`)."""
import json

import pytest

from rils.train.config import ConfigError, load_config
from rils.train.engine import train
from rils.train.metrics import WANDB_ID_FILE

from .helpers import TINY

wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    sent, inits = [], []
    log, init = wandb.sdk.wandb_run.Run.log, wandb.init

    def spy_log(run, data, *a, **kw):
        sent.append(dict(data))
        return log(run, data, *a, **kw)

    def spy_init(*a, **kw):
        run = init(*a, **kw)
        inits.append({"id": run.id, "config": dict(run.config), "resume": kw.get("resume")})
        return run

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", spy_log)
    monkeypatch.setattr(wandb, "init", spy_init)
    return sent, inits


def test_wandb_gets_what_metrics_jsonl_gets_and_a_resume_continues_the_run(offline, tmp_path):
    sent, inits = offline
    out = tmp_path / "run"
    base = [*TINY, "train.batch_size=8", "train.checkpoint_every=2", "logging.wandb=true",
            "logging.wandb_project=rils-test", f"output_dir={out}"]
    train(load_config("demo", [*base, "train.max_steps=2"]))
    run_id = (out / WANDB_ID_FILE).read_text().strip()
    assert len(inits) == 1 and inits[0]["id"] == run_id
    assert inits[0]["config"]["method"] == "rils" and inits[0]["config"]["train"]["batch_size"] == 8
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in sent] == [r["step"] for r in logged] == [1, 2]
    for s, r in zip(sent, logged):
        for key in ("loss", "clip_loss", "recon_loss", "lr", "grad_norm", "i2t_acc"):
            assert s[key] == r[key]
    assert list((out / "wandb").glob(f"offline-run-*-{run_id}"))

    train(load_config("demo", [*base, "train.max_steps=4", "resume=latest"]))
    assert inits[1]["id"] == run_id                      # the same W&B run goes on
    assert [s["step"] for s in sent] == [1, 2, 3, 4]
    assert len(list((out / "wandb").glob(f"offline-run-*-{run_id}"))) == 2

    train(load_config("demo", [*base, "train.max_steps=2", "overwrite=true"]))
    assert inits[2]["id"] != run_id                      # a fresh run in the folder: a new W&B run


def test_tensorboard_can_be_turned_off(tmp_path):
    out = tmp_path / "run"
    train(load_config("demo", [*TINY, "train.batch_size=8", "train.max_steps=1", "logging.tensorboard=false",
                               f"output_dir={out}"]))
    assert (out / "metrics.jsonl").is_file() and not (out / "tb").exists()


def test_wandb_without_the_package_is_a_one_line_config_error(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"logging.wandb_project: must name a W&B project"):
        load_config("demo", ["logging.wandb=true", "logging.wandb_project="])
    with pytest.raises(ConfigError, match=r"logging.tensorboard: expected bool, got .maybe."):
        load_config("demo", ["logging.tensorboard=maybe"])
    with pytest.raises(ConfigError, match=r"logging.wandb: true needs the wandb package \(pip install 'rils\[wandb\]'\)"):
        load_config("demo", ["logging.wandb=true"])
