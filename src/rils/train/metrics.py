"""metrics.jsonl, TensorBoard and Weights & Biases: what a run logs, written by rank 0 only."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

WANDB_ID_FILE = "wandb_run_id"   # in the run folder: a resumed run continues the same W&B run


class MetricsLog:
    """metrics.jsonl (one object per logged step), TensorBoard and W&B (`logging`), rank 0 only.
    TensorBoard and W&B get the same values as metrics.jsonl, nested dicts as "key/subkey"."""

    def __init__(self, out: Path, resume_step: int | None, enabled: bool, logging=None, config: dict | None = None):
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.tb = self.wandb = None
        if not enabled:
            return
        self.failed = False
        if resume_step is not None and self.path.exists():
            # drop what the interrupted run logged after its checkpoint (it is about to be redone),
            # and a last line cut short by the kill
            keep = [ln for ln in self.path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if (rec := _json_record(ln)) is not None and rec["step"] <= resume_step]
            self.path.write_text("".join(k + "\n" for k in keep))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        if logging is None or logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))
        if logging is not None and logging.wandb:
            self.wandb = _start_wandb(out, resume_step is not None, logging, config or {})

    def write(self, record: dict, log=None) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:  # a full disk: the checkpoint save will stop the run, not the log
            if not self.failed and log is not None:
                log(f"warning: could not append to {self.path}: {exc.strerror or exc}")
            self.failed = True
        scalars = _scalars(record)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, record["step"])
        if self.wandb is not None:
            # "step" is a logged value that every chart is drawn against (define_metric), not W&B's
            # own step counter: a resumed run re-logs the steps after its checkpoint, which W&B's
            # monotonic counter would drop.
            self.wandb.log({"step": record["step"], **scalars})

    def close(self):
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _scalars(record: dict) -> dict:
    """The numbers of a metrics record, one level of nesting flattened to "key/subkey"."""
    out = {}
    for k, v in record.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
            out[k] = v
        elif isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()
                        if isinstance(vv, (int, float)) and not isinstance(vv, bool)})
    return out


WANDB_OFFLINE_MODES = ("offline", "dryrun", "disabled")   # modes in which wandb.init asks for no API key


def wandb_login_problem() -> str | None:
    """Why `wandb.init` would stop for want of an API key, as a one-line message naming the fixes; None
    when it would start (offline or disabled, or credentials found), or when we cannot tell.

    Without a key and outside offline mode wandb.init raises after the run folder is made, with a
    30-line traceback (or, at a terminal, stops to ask). The check reads what wandb itself reads, the
    way `wandb.setup()` does: the global and workspace settings files (`wandb offline` writes
    `mode = offline` there, `wandb login --host` a base_url), then the WANDB_* environment (WANDB_MODE,
    WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE, WANDB_BASE_URL), then the .netrc entry of the W&B host
    (what `wandb login` writes). It touches no network and does not create wandb's process-wide
    setup, which would freeze the environment for the wandb.init that follows."""
    import os

    try:
        import wandb
        from wandb.sdk.lib import wbauth

        settings = wandb.Settings()
        settings.quiet = True    # wandb.init prints which settings files it read; once is enough
        config_dir = os.environ.get("WANDB_CONFIG_DIR")
        settings.settings_system = str(Path(config_dir).expanduser() / "settings" if config_dir
                                       else Path("~/.config/wandb/settings").expanduser())
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        if settings.mode in WANDB_OFFLINE_MODES or settings.api_key or settings.identity_token_file:
            return None
        if wbauth.read_netrc_auth(host=settings.base_url):
            return None
        host = settings.base_url
    except Exception:   # another wandb version moved these: let wandb.init decide, as before the check
        return None
    return (f"logging.wandb: true, but W&B has no API key for {host} and is not in offline mode: run "
            f"`wandb login` (or set WANDB_API_KEY), or set WANDB_MODE=offline to log locally and "
            f"`wandb sync` later, or set logging.wandb=false")


def _start_wandb(out: Path, resuming: bool, logging, config: dict):
    """wandb.init with the run id kept in the run folder: a resumed run continues it; a fresh run
    (a new or overwritten folder) gets a new one."""
    import wandb

    id_file = out / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if resuming and id_file.is_file() else ""
    if not run_id:
        run_id = uuid.uuid4().hex[:16]
        id_file.write_text(run_id + "\n")
    run = wandb.init(project=logging.wandb_project, entity=logging.wandb_entity or None,
                     name=logging.wandb_name or out.resolve().name, id=run_id, resume="allow",
                     config=config, dir=str(out))
    run.define_metric("step")
    run.define_metric("*", step_metric="step")
    return run


def _json_record(line: str):
    """A metrics line as a dict with a numeric step, or None (a line cut short by a kill)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)) and not isinstance(rec["step"], bool)
    return rec if ok else None
