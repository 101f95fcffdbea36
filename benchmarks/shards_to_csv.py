"""Unpack webdataset shards into image files plus a CSV (filepath, caption) for `rils eval retrieval`.
Usage: shards_to_csv.py 'data/openclipart/val/{00000..00000}.tar' data/openclipart/val.csv"""
import csv
import sys
from pathlib import Path

import webdataset as wds


def main(pattern: str, out_csv: str) -> None:
    out = Path(out_csv)
    images = out.parent / f"{out.stem}_images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for sample in wds.WebDataset(pattern, shardshuffle=False):
        key = sample["__key__"].replace("/", "_")
        ext = next(e for e in ("png", "jpg", "jpeg", "webp") if e in sample)
        (images / f"{key}.{ext}").write_bytes(sample[ext])
        rows.append((f"{images.name}/{key}.{ext}", sample["txt"].decode("utf-8")))
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["filepath", "caption"])
        w.writerows(rows)
    print(f"{len(rows)} images -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
