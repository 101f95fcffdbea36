"""Tables for people: metrics are stored as fractions and shown as percentages."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

_NAMES = {"top1": "top-1", "top5": "top-5", "mean_per_class": "mean per-class", "mean_recall": "mean recall"}


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _flat(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics (detection's {"bbox": {...}, "segm": {...}}) as "bbox AP", "segm AP50", ..."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = value
    return out


def headline(record: dict) -> list[tuple[str, str]]:
    """(metric, value in %) rows; few-shot means and stds are shown together as "mean ± std"."""
    metrics = _flat(record["metrics"])
    rows = []
    for name, value in metrics.items():
        if name.endswith("_std"):
            continue
        if name.endswith("_mean") and f"{name[:-5]}_std" in metrics:
            rows.append((name[:-5], f"{_pct(value)} ± {_pct(metrics[name[:-5] + '_std'])}"))
        else:
            rows.append((_NAMES.get(name, name), _pct(value)))
    return rows


def text_table(headers: list[str], rows: list[tuple]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line("-" * w for w in widths), *(line(r) for r in rows)])


def record_table(record: dict) -> str:
    task = f", task {record['task']}" if record.get("task") else ""
    title = f"{record['protocol']} on {record['dataset']} ({record['split']}{task}), {record['checkpoint']}"
    return title + "\n" + text_table(["metric", "value (%)"], headline(record))


def markdown_table(records: list[dict]) -> str:
    lines = ["| protocol | dataset | split | metric | value (%) |", "|---|---|---|---|---|"]
    for r in records:
        for metric, value in headline(r):
            lines.append(f"| {r['protocol']} | {r['dataset']} | {r['split']} | {metric} | {value} |")
    return "\n".join(lines) + "\n"


def float32_value(x: float) -> float:
    """A float32 result (a loss computed in float32) as float32 holds it, written shortest: 0.6703, not
    the 0.6703000068664551 that its float64 copy prints as. The fewest significant digits (up to 9,
    always enough for a float32) that read back as the same float32."""
    import struct

    x = float(x)
    if not math.isfinite(x):
        return x
    as32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]  # noqa: E731
    target = as32(x)
    for digits in range(1, 10):
        short = float(f"{target:.{digits}g}")
        if as32(short) == target:
            return short
    return target


def write_json(path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)   # atomic: a script that skips finished work never sees half a record
