"""`rils data prepare NAME --out DIR`: locally installed datasets -> webdataset shards, and a rendered
dense-transfer testbed (shapes-dense) in the ADE20K and COCO layouts.

Output (the img2dataset layout `rils pretrain data.source=shards` reads):
    DIR/train/00000.tar ...   DIR/val/00000.tar ...   (fashion-mnist: train/ and test/)
    DIR/manifest.json         counts per split, shards, skipped-and-why, caption statistics and the
                              exact brace pattern of each split for data.path=...
Each sample: KEY.png (RGB), KEY.txt (the caption), KEY.json (id, source path, label/category, ...).
Output is deterministic: same files and options -> byte-identical shards, whatever --workers.

Datasets:
    openclipart     Debian openclipart-png + openclipart-svg (/usr/share/openclipart); captions from
                    the SVG metadata; split by a hash of the drawing's path (--val-fraction, 5%).
    fashion-mnist   Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist); the official
                    train/test split; 28x28 images kept small.
    shapes-dense    no install: overlapping procedural shapes (--train 600, --val 150, --image-size 64,
                    --seed 0) rendered for segmentation and detection, NOT shards:
                      DIR/ade/images/{training,validation}/NNNNNN.jpg, DIR/ade/annotations/.../NNNNNN.png
                      (0 other = a 2-px frame, 1 background, 2..7 the shapes), DIR/ade/classes.txt,
                      DIR/coco/{train2017,val2017}/NNNNNN.jpg, DIR/coco/annotations/instances_*.json,
                      DIR/manifest.json; --out must be new, empty or a previous shapes-dense output.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

from .common import MissingDataError, ShardWriter, sample_files, split_entry, split_of, write_manifest

DATASETS = ("openclipart", "fashion-mnist", "shapes-dense")
__all__ = ["DATASETS", "MissingDataError", "prepare", "prepare_openclipart", "prepare_fashion_mnist",
           "prepare_shapes_dense", "add_data_parser", "run_data_prepare", "run_shards_to_csv"]
# The command-line options each dataset takes; any other one given is refused with one line.
_OPTIONS = {
    "openclipart": ("root", "image_size", "shard_size", "limit", "val_fraction", "workers"),
    # val_fraction is taken so that prepare_fashion_mnist can say why it refuses it
    "fashion-mnist": ("root", "image_size", "shard_size", "limit", "val_fraction", "workers"),
    "shapes-dense": ("image_size", "train", "val", "seed"),
}


def _progress(log, name, done, total, t0):
    if log is not None:
        log(f"{name}: {done}/{total} ({time.perf_counter() - t0:.0f} s)")


def _pool_map(fn, items, workers: int):
    """Ordered results; a process pool when workers > 1 (output order never depends on it)."""
    if workers <= 1 or len(items) < 2 * workers:
        yield from map(fn, items)
        return
    import multiprocessing as mp
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
    with ctx.Pool(workers) as pool:
        yield from pool.imap(fn, items, chunksize=4)


# The recipe each kind of machine is given (the printed command picks this machine's): the paper's
# ViT-B/16 needs a GPU (on a 2-core CPU it ran at 103 s a step); configs/compare.yaml is the recipe this
# project runs these corpora with on a CPU (docs/RESULTS.md: vit_ti8_64, 300 steps of 64, ~8 minutes).
CPU_RECIPE, CPU_PRESET, CPU_STEPS, CPU_BATCH = "compare", "vit_ti8_64", 300, 64
GPU_RECIPE, GPU_BATCH = "rils", 128


def _usage(pattern: str | None, samples: int, dataset: str) -> dict:
    """The pretrain commands for these shards, for a GPU (`pretrain`: the paper's recipe) and for a
    CPU (`pretrain_cpu`); both in the manifest, so it does not depend on the machine that wrote it.
    data.num_samples spares counting the shards at start; a split smaller than the recipe's batch
    gets that many per batch, so that one step fits."""
    if not pattern:
        return {"pretrain": None, "pretrain_cpu": None}
    data = f"data.source=shards data.path='{pattern}' data.num_samples={samples}"
    gpu = f"rils pretrain -c {GPU_RECIPE} {data}" + (f" train.batch_size={samples}" if samples < GPU_BATCH else "")
    # the preset is the recipe's too; named so that the command says what it builds
    cpu = (f"rils pretrain -c {CPU_RECIPE} model.preset={CPU_PRESET} {data} train.max_steps={CPU_STEPS} "
           f"output_dir=runs/{dataset}"
           + (f" train.batch_size={samples}" if samples < CPU_BATCH else ""))
    return {"pretrain": gpu, "pretrain_cpu": cpu}


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def prepare_openclipart(out, root=None, image_size: int = 128, shard_size: int = 1000,
                        limit: int | None = None, val_fraction: float | None = None,
                        workers: int | None = None, max_pixels: int = 1_000_000_000, log=None) -> dict:
    from . import openclipart as oc

    root = Path(root or oc.DEFAULT_ROOT)
    val_fraction = 0.05 if val_fraction is None else float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if image_size < 8:
        raise ValueError(f"--image-size must be at least 8, got {image_size}")
    workers = _default_workers() if workers is None else max(1, int(workers))
    t0 = time.perf_counter()
    items, skipped, examples = oc.list_items(root)  # MissingDataError when not installed
    found, drawings = len(items) + sum(skipped.values()), len(items)
    if limit is not None:
        items = items[: max(0, int(limit))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writers = {s: ShardWriter(out / s, shard_size) for s in ("train", "val")}
    captions = {s: [] for s in writers}
    sources, categories, templates, svg_states = Counter(), Counter(), Counter(), Counter()
    fn = partial(oc.process, image_size=image_size, max_pixels=max_pixels)
    try:
        for i, (item, res) in enumerate(zip(items, _pool_map(fn, items, workers)), 1):
            if "skip" in res:
                reason = res["skip"]
                skipped[reason] = skipped.get(reason, 0) + 1
                if len(examples.setdefault(reason, [])) < 5:
                    examples[reason].append(item.item_id)
            else:
                split = split_of(item.item_id, val_fraction)
                meta = res["meta"]
                meta["split"] = split
                writers[split].write(sample_files(res["png"], "png", res["caption"], meta))
                captions[split].append(res["caption"])
                sources[meta["name_source"]] += 1
                categories[meta["category"] or ""] += 1
                templates[meta["template"]] += 1
                svg_states[meta["svg_metadata"]] += 1
            if i % 1000 == 0:
                _progress(log, "openclipart", i, len(items), t0)
    finally:
        for w in writers.values():
            w.close()
    manifest = {
        "dataset": "openclipart",
        "source": {"root": str(root), "packages": list(oc.PACKAGES.values())},
        "options": {"image_size": image_size, "shard_size": shard_size, "limit": limit,
                    "val_fraction": val_fraction, "max_pixels": max_pixels},
        "found_png_paths": found,
        "drawings": drawings,
        "considered": len(items),
        "samples": sum(w.count for w in writers.values()),
        "splits": {s: split_entry(w, captions[s], {"pattern_relative": f"{s}/{{00000..{len(w.shards) - 1:05d}}}.tar"
                                                    if w.shards else None})
                   for s, w in writers.items()},
        "skipped": dict(sorted(skipped.items())),
        "skipped_examples": {k: v for k, v in sorted(examples.items())},
        "caption_name_sources": dict(sources.most_common()),
        "caption_templates": {oc.TEMPLATES[t][1]: n for t, n in sorted(templates.items())},
        "svg_metadata": dict(svg_states.most_common()),
        "categories": dict(sorted(categories.items())),
        "image": {"format": "png", "mode": "RGB", "max_side": image_size, "background": "white"},
        "usage": _usage(writers["train"].pattern(), writers["train"].count, "openclipart"),
    }
    write_manifest(out, manifest)
    return manifest


def prepare_fashion_mnist(out, root=None, image_size: int = 128, shard_size: int = 1000,
                          limit: int | None = None, val_fraction: float | None = None,
                          workers: int | None = None, log=None) -> dict:
    from PIL import Image

    from . import fashion_mnist as fm
    from .common import png_bytes

    if val_fraction is not None:
        raise ValueError("--val-fraction does not apply to fashion-mnist: it keeps the official train/test split")
    root = Path(root or fm.DEFAULT_ROOT)
    paths = fm.check_install(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits, found, per_class = {}, {}, {}
    for split, (img_path, lab_path) in paths.items():
        images, labels = fm.load_split(img_path, lab_path)
        found[split] = int(len(labels))
        n = len(labels) if limit is None else min(len(labels), max(0, int(limit)))
        writer = ShardWriter(out / split, shard_size)
        caps, counts = [], Counter()
        try:
            for i in range(n):
                item_id = f"{split}/{i:05d}"
                label = int(labels[i])
                caption, template = fm.caption_for(item_id, label)
                im = Image.fromarray(images[i], mode="L").convert("RGB")
                if max(im.size) > image_size:  # never enlarged: the training transform resizes
                    im.thumbnail((image_size, image_size), Image.Resampling.LANCZOS)
                meta = {"id": item_id, "source": str(img_path), "labels_source": str(lab_path), "index": i,
                        "split": split, "label": label, "class_name": fm.CLASS_NAMES[label],
                        "caption": caption, "template": template, "width": im.size[0], "height": im.size[1]}
                writer.write(sample_files(png_bytes(im), "png", caption, meta))
                caps.append(caption)
                counts[fm.CLASS_NAMES[label]] += 1
                if (i + 1) % 10000 == 0:
                    _progress(log, f"fashion-mnist {split}", i + 1, n, t0)
        finally:
            writer.close()
        splits[split] = split_entry(writer, caps, {
            "pattern_relative": f"{split}/{{00000..{len(writer.shards) - 1:05d}}}.tar" if writer.shards else None,
            "per_class": {c: counts[c] for c in fm.CLASS_NAMES}})
        per_class[split] = counts
    manifest = {
        "dataset": "fashion-mnist",
        "source": {"root": str(root), "packages": [fm.PACKAGE]},
        "options": {"image_size": image_size, "shard_size": shard_size, "limit": limit},
        "found": found,
        "samples": sum(s["samples"] for s in splits.values()),
        "splits": splits,
        "skipped": {},
        "classes": list(fm.CLASS_NAMES),
        "caption_templates": list(fm.TEMPLATES),
        "image": {"format": "png", "mode": "RGB", "size": "28x28 (grayscale as RGB)"},
        "usage": _usage(splits["train"]["pattern"], splits["train"]["samples"], "fashion-mnist"),
    }
    write_manifest(out, manifest)
    return manifest


def prepare_shapes_dense(out, image_size: int = 64, train: int = 600, val: int = 150, seed: int = 0,
                         log=None) -> dict:
    from . import shapes_dense

    return shapes_dense.prepare(out, image_size=image_size, train=train, val=val, seed=seed, log=log)


def prepare(name: str, out, **options) -> dict:
    if name == "shapes-dense":
        return prepare_shapes_dense(out, **options)
    if name == "openclipart":
        return prepare_openclipart(out, **options)
    if name == "fashion-mnist":
        return prepare_fashion_mnist(out, **options)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


# ---------------------------------------------------------------- command line

def add_data_parser(subparsers, help: str) -> None:
    import argparse

    data = subparsers.add_parser("data", help=help)
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("prepare", help="installed dataset -> webdataset shards + manifest.json "
                                        "(shapes-dense: ADE20K + COCO folders)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=DATASETS)
    p.add_argument("--out", required=True, help="output folder (DIR/train, DIR/val|test, DIR/manifest.json; "
                                                "shapes-dense: DIR/ade, DIR/coco, DIR/manifest.json)")
    p.add_argument("--root", help="install location (default /usr/share/openclipart or "
                                  "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--image-size", type=int,
                   help="longest side at most this many pixels, aspect kept, never enlarged (default 128); "
                        "shapes-dense: the side of the square images (default 64)")
    p.add_argument("--shard-size", type=int, help="samples per shard (default 1000)")
    p.add_argument("--limit", type=int, help="only the first N items (per split for fashion-mnist), for quick tries")
    p.add_argument("--val-fraction", type=float,
                   help="openclipart: share of drawings in val/, by a hash of their path (default 0.05)")
    p.add_argument("--workers", type=int, help="image decoding processes (openclipart; default min(2, CPUs))")
    p.add_argument("--train", type=int, help="shapes-dense: training images (default 600)")
    p.add_argument("--val", type=int, help="shapes-dense: validation images (default 150)")
    p.add_argument("--seed", type=int, help="shapes-dense: the seed every image is drawn from (default 0)")
    p.set_defaults(func=run_data_prepare)
    from . import shards_to_csv as s2c   # no heavy import at its top: --help stays quick
    c = dsub.add_parser("shards-to-csv", help="webdataset shards -> image files + a CSV (filepath, caption), "
                                              "for data.unique_captions and rils eval retrieval",
                        description=s2c.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("pattern", help="the shards, a brace pattern: 'data/openclipart/val/{00000..00000}.tar'")
    c.add_argument("out", help="the CSV to write (its images go to a folder beside it, OUT_images/)")
    c.set_defaults(func=run_shards_to_csv)


def run_shards_to_csv(args) -> int:
    from ..shards import ShardError
    from .shards_to_csv import shards_to_csv

    try:
        info = shards_to_csv(args.pattern, args.out, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError, ShardError) as exc:
        print(f"rils data shards-to-csv: error: {exc}", file=sys.stderr)
        return 2
    skipped = "".join(f", {n} skipped ({reason})" for reason, n in info["skipped"].items())
    print(f"{info['samples']} samples from {info['shards']} shard(s){skipped} -> {info['csv']} "
          f"(images in {info['images']})")
    print(f"  train on it:     rils pretrain -c CONFIG data.source=csv data.path={info['csv']} data.unique_captions=true")
    print(f"  retrieval on it: rils eval retrieval --checkpoint CKPT --dataset {info['csv']}")
    return 0


def run_data_prepare(args) -> int:
    t0 = time.perf_counter()
    # Options left unset keep each dataset's own default (--image-size: 128, shapes-dense 64).
    given = {k: getattr(args, k, None) for k in sorted({k for ks in _OPTIONS.values() for k in ks})}
    given = {k: v for k, v in given.items() if v is not None}
    try:
        foreign = [k for k in given if k not in _OPTIONS[args.name]]
        if foreign:
            raise ValueError(f"--{foreign[0].replace('_', '-')} does not apply to {args.name}")
        manifest = prepare(args.name, args.out, **given,
                           log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except MissingDataError:
        raise  # main() prints it and exits 2
    except ValueError as exc:
        print(f"rils: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    if args.name == "shapes-dense":
        _print_shapes_dense(manifest, Path(args.out), seconds)
        return 0
    print(f"{manifest['dataset']}: {manifest['samples']} samples in {seconds:.1f} s -> {Path(args.out) / 'manifest.json'}")
    for split, entry in manifest["splits"].items():
        print(f"  {split:5s} {entry['samples']:6d} samples, {entry['shards']} shard(s): {entry['pattern'] or '-'}")
    if manifest["skipped"]:
        print("  skipped: " + ", ".join(f"{k} {v}" for k, v in manifest["skipped"].items()))
    _print_usage(manifest["usage"])
    return 0


def _print_usage(usage: dict) -> None:
    """This machine's command first: copied verbatim it runs well here (with no CUDA GPU, the paper's
    vit_b16 would take days); the other kind's follows."""
    if not usage.get("pretrain"):
        return
    from ...precision import resolve_device   # the one place that decides what `auto` runs on

    cpu = (f"no CUDA GPU here, so configs/{CPU_RECIPE}.yaml's CPU-sized recipe: {CPU_PRESET}, "
           f"{CPU_STEPS} steps of {CPU_BATCH}", usage["pretrain_cpu"])
    gpu = ("the paper's ViT-B/16 recipe (configs/paper_b16.yaml), for this CUDA GPU", usage["pretrain"])
    here, other = (gpu, cpu) if resolve_device("auto").type == "cuda" else (cpu, gpu)
    print(f"  train with ({here[0]}):\n    {here[1]}")
    print(f"  {'on a CPU' if here is gpu else 'with a CUDA GPU, the paper recipe'}:\n    {other[1]}")


def _print_shapes_dense(manifest: dict, out: Path, seconds: float) -> None:
    splits = manifest["splits"]
    print(f"shapes-dense: {manifest['samples']} images in {seconds:.1f} s -> {out / 'manifest.json'}")
    for split, entry in splits.items():
        print(f"  {split:5s} {entry['images']:6d} images, {entry['annotations']} instance annotations "
              f"({entry['crowd_annotations']} crowd), {entry['unannotated_slivers']} slivers left unannotated")
    print(f"  segmentation (ADE20K layout): {out / 'ade'}   detection (COCO layout): {out / 'coco'}")
    print(f"  evaluate with: rils eval segment --checkpoint CKPT --dataset {out / 'ade'}")
    print(f"                 rils eval detect --checkpoint CKPT --dataset {out / 'coco'}")
