"""metrics.jsonl and TensorBoard: what a run logs, written by rank 0 only."""
from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """metrics.jsonl (one object per logged step) and TensorBoard, written by rank 0 only."""

    def __init__(self, out: Path, resume_step: int | None, enabled: bool):
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.tb = None
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
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(out / "tb"))

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
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step",):
                self.tb.add_scalar(k, v, record["step"])
            elif isinstance(v, dict):
                for kk, vv in v.items():
                    self.tb.add_scalar(f"{k}/{kk}", vv, record["step"])

    def close(self):
        if self.tb is not None:
            self.tb.close()


def _json_record(line: str):
    """A metrics line as a dict with a numeric step, or None (a line cut short by a kill)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)) and not isinstance(rec["step"], bool)
    return rec if ok else None
