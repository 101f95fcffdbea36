"""What an exact resume on webdataset shards costs, 90% into an epoch of 10,000 samples.

Writes 10 shards of 1,000 samples (96 px JPEG + caption), then times, on this rank's data loader
(the 64 px training transform of vit_ti8_64, batch 100, shuffle buffer 1000, in the main process):
  epoch_s            one epoch from the start, 100 batches (data only: the smallest honest denominator)
  resume_s           a loader resumed at batch 90 from the recorded stream position, to its first batch
                     (resume_overhead_s: less the time a loader started from scratch takes to its first)
  replay_s           the same resume the old way (read, decode and drop 90 batches), to its first batch
with and without a `sizes.json` next to the shards (resume_s: median of 3; epoch_s: the faster of the
two epochs, as the machine may be shared), and checks that the resumed batches are exactly batches
90..99 of the uninterrupted epoch. The goal: resume_s < 5% of epoch_s.

    .venv/bin/python benchmarks/perf/shard_resume.py [--out benchmarks/perf/results/shard_resume.json]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from rils.data.loader import make_loader, note_position
from rils.data.samples import SampleMaker
from rils.data.shards import listed_sizes
from rils.data.sources import expand_shards
from rils.data.transforms import train_transform
from rils.model.text import get_tokenizer

SHARDS, PER_SHARD, BATCH, RESUME_AT = 10, 1000, 100, 90


def write_shards(folder: Path) -> str:
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(16):
        buf = io.BytesIO()
        smooth = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(smooth).resize((96, 96), Image.BILINEAR).save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
    for s in range(SHARDS):
        with wds.TarWriter(str(folder / f"{s:05d}.tar")) as sink:
            for i in range(PER_SHARD):
                n = s * PER_SHARD + i
                sink.write({"__key__": f"{n:09d}", "jpg": jpegs[n % len(jpegs)],
                            "txt": f"a picture number {n} of smooth colour noise"})
    return str(folder / f"{{00000..{SHARDS - 1:05d}}}.tar")


def loader(urls, **kw):
    maker = SampleMaker(train_transform(64), get_tokenizer(77))
    return make_loader("shards", urls, maker, seed=0, epoch=0, rank=0, world=1, batch_size=BATCH, workers=0,
                       shuffle_buffer=1000, **kw)


def first_batch_seconds(urls, **kw):
    t = time.perf_counter()
    it = loader(urls, **kw)
    batch = next(it)
    return time.perf_counter() - t, batch, it


def measure(urls, sizes: dict, repeats: int = 3) -> dict:
    """Seconds of one epoch, of the resume to its first batch (median of `repeats`), of the old replay;
    and whether the resumed batches are exactly those of the uninterrupted epoch."""
    t = time.perf_counter()
    it, track, seeds = loader(urls, sizes=sizes), {}, []
    for b in range(SHARDS * PER_SHARD // BATCH):
        batch = next(it)
        note_position(track, batch)
        seeds.append(batch["seed"])
        if b + 1 == RESUME_AT:
            position = {"last_role": track["last_role"], "roles": dict(track["roles"])}
    epoch_s = time.perf_counter() - t
    fresh_s = statistics.median(first_batch_seconds(urls, sizes=sizes)[0] for _ in range(repeats))
    resumes = [first_batch_seconds(urls, sizes=sizes, start_step=RESUME_AT, position=position) for _ in range(repeats)]
    _, first, rest = resumes[-1]
    resumed = [first["seed"]] + [next(rest)["seed"] for _ in range(len(seeds) - RESUME_AT - 1)]
    replay_s, _, _ = first_batch_seconds(urls, sizes=sizes, start_step=RESUME_AT)
    return {"epoch_s": round(epoch_s, 3), "first_batch_from_scratch_s": round(fresh_s, 3),
            "resume_s": round(statistics.median(r[0] for r in resumes), 3), "replay_s": round(replay_s, 3),
            "resumed_batches_exact": all(torch.equal(a, b) for a, b in zip(seeds[RESUME_AT:], resumed))}


def judge(result: dict, epoch_s: float) -> dict:
    """Fractions of the epoch: of the fastest epoch measured (the machine is shared; a slow epoch
    would flatter the ratio)."""
    return {**result, "resume_overhead_s": round(result["resume_s"] - result["first_batch_from_scratch_s"], 3),
            "resume_fraction_of_epoch": round(result["resume_s"] / epoch_s, 4),
            "replay_fraction_of_epoch": round(result["replay_s"] / epoch_s, 4),
            "goal_met": result["resumed_batches_exact"] and result["resume_s"] < 0.05 * epoch_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "shard_resume.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"samples": SHARDS * PER_SHARD, "shards": SHARDS, "batch": BATCH, "resume_at_batch": RESUME_AT,
              "shuffle_buffer": 1000, "workers": 0, "image": "96 px JPEG -> 64 px crop",
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        urls = expand_shards(write_shards(Path(tmp)))
        headers = measure(urls, sizes={})
        (Path(tmp) / "sizes.json").write_text(json.dumps({Path(u).name: PER_SHARD for u in urls}))
        listed = measure(urls, sizes=listed_sizes(urls))
    report["epoch_s"] = epoch_s = min(headers["epoch_s"], listed["epoch_s"])
    report["tar_headers"], report["sizes_json"] = judge(headers, epoch_s), judge(listed, epoch_s)
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(report[k]["goal_met"] for k in ("tar_headers", "sizes_json")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
