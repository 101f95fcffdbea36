"""`rils data shards-to-csv PATTERN OUT.csv`: webdataset shards -> image files + a CSV (filepath, caption).

For what a CSV gives and a stream of shards cannot: `data.unique_captions` (no two samples of an
accumulated global batch share a caption) needs every caption up front, as a csv source has them, and
`rils eval retrieval` reads a CSV of image path + caption. The images are copied as they are stored
(no re-encoding) into OUT_images/ beside the CSV, one file per sample named after its key; `filepath`
is relative to the CSV, so the two move together. A sample without an image or without a caption is
left out and counted.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

IMAGE_SUFFIXES = ("png", "jpg", "jpeg", "webp", "bmp")   # the image members a csv source reads back


def shards_to_csv(pattern: str, out_csv, *, log=None) -> dict:
    """Unpack the shards of `pattern` (a brace pattern, '::' joins several) into OUT_images/ and the
    CSV `out_csv` (columns filepath, caption); returns counts. Raises ValueError / FileNotFoundError
    for a pattern that names no shard, ShardError (an OSError) for a shard that cannot be read."""
    from ..shards import read_shard
    from ..sources import expand_shards

    urls = expand_shards(pattern, key="shards")
    out = Path(out_csv)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"the output must be a .csv file, got {out}")
    images = out.parent / f"{out.stem}_images"
    images.mkdir(parents=True, exist_ok=True)
    rows, skipped, used = [], Counter(), set()
    for n, url in enumerate(urls, 1):
        for _, sample in read_shard(url):
            ext = next((e for e in IMAGE_SUFFIXES if e in sample), None)
            if ext is None or "txt" not in sample:
                skipped["no_image" if ext is None else "no_caption"] += 1
                continue
            stem = sample["__key__"].replace("/", "_")
            name, k = f"{stem}.{ext}", 1
            while name in used:   # keys repeat across shards written separately (each starting at 0)
                name, k = f"{stem}_{k}.{ext}", k + 1
            used.add(name)
            (images / name).write_bytes(sample[ext])
            rows.append((f"{images.name}/{name}", sample["txt"].decode("utf-8", errors="replace")))
        if log is not None:
            log(f"shards-to-csv: {n}/{len(urls)} shards, {len(rows)} samples")
    if not rows:
        raise ValueError(f"no sample of {pattern} has both an image ({', '.join(IMAGE_SUFFIXES)}) and a caption (txt)")
    # Written whole, then renamed: an interrupted run leaves no CSV that looks complete.
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filepath", "caption"])
        writer.writerows(rows)
    os.replace(tmp, out)
    return {"samples": len(rows), "shards": len(urls), "skipped": dict(skipped), "csv": str(out),
            "images": str(images)}
