"""`rils data prepare` end to end on tiny installs written by the tests: shards read back with
webdataset, counts and captions against the manifest, determinism, and the missing-package error."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from rils.cli import main
from rils.data.sources import count_shard_samples, expand_shards

from .prepare_fixtures import make_fashion_mnist, make_openclipart


def read_split(pattern: str) -> list[dict]:
    return list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.tar"))}


@pytest.fixture(scope="module")
def clipart_root(tmp_path_factory):
    return make_openclipart(tmp_path_factory.mktemp("openclipart"))


def test_openclipart_end_to_end(clipart_root, tmp_path, capsys):
    out = tmp_path / "oc"
    rc = main(["data", "prepare", "openclipart", "--root", str(clipart_root), "--out", str(out),
               "--image-size", "32", "--shard-size", "2", "--val-fraction", "0.5", "--workers", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["found_png_paths"] == 8 and manifest["drawings"] == 7
    assert manifest["skipped"] == {"duplicate_link": 1, "image_too_small": 1, "image_unreadable": 1,
                                   "no_usable_text": 1}
    assert manifest["skipped_examples"]["duplicate_link"] == ["shapes/eagle_copy.png"]
    assert manifest["samples"] == 4
    samples = []
    for split in ("train", "val"):
        entry = manifest["splits"][split]
        if entry["samples"]:
            urls = expand_shards(entry["pattern"])       # the pattern works as data.path
            assert len(urls) == entry["shards"] == -(-entry["samples"] // 2)
            assert count_shard_samples(urls) == entry["samples"]
            assert entry["pattern"] in printed or split == "val"
            got = read_split(entry["pattern"])
            assert len(got) == entry["samples"] == entry["caption_stats"]["count"]
            samples += got
    assert sum(manifest["splits"][s]["samples"] for s in ("train", "val")) == 4
    by_id = {}
    for s in samples:
        meta = json.loads(s["json"])
        caption = s["txt"].decode()
        assert caption == meta["caption"] and caption.strip()
        im = Image.open(io.BytesIO(s["png"]))
        assert im.mode == "RGB" and max(im.size) <= 32 and (im.width, im.height) == (meta["width"], meta["height"])
        if meta["id"] != "shapes/grey_square":  # a plain grey square
            assert im.getpixel((0, 0)) == (255, 255, 255)  # transparency composited onto white
        by_id[meta["id"]] = (caption, meta, im)
    assert set(by_id) == {"animals/birds/eagle_01", "computer/icons/lemon-theme/cdrom_unmount",
                          "food/fruit/green_pear_jane_doe_01", "shapes/grey_square"}
    caption, meta, im = by_id["animals/birds/eagle_01"]
    assert "Eagle" in caption or "bald eagle" in caption
    assert meta["category"] == "animals" and meta["also_in"] == ["shapes"]
    assert meta["source"].endswith("png/animals/birds/eagle_01.png") and meta["svg"].endswith("eagle_01.svg")
    assert (im.size, meta["original_width"]) == ((32, 21), 300)
    r, g, b = im.getpixel((16, 10))
    assert r > 200 and g < 60 and b < 60                      # the red square survives the reduction
    caption, meta, _ = by_id["computer/icons/lemon-theme/cdrom_unmount"]
    assert "cdrom unmount" in caption and "Lemon" not in caption and "hash" not in caption
    caption, meta, _ = by_id["food/fruit/green_pear_jane_doe_01"]
    assert "Green Pear" in caption and "@" not in caption
    caption, meta, _ = by_id["shapes/grey_square"]
    assert meta["svg_metadata"] == "missing" and "grey square" in caption


def test_openclipart_is_deterministic_across_workers_and_reruns(clipart_root, tmp_path):
    opts = ["--root", str(clipart_root), "--image-size", "32", "--shard-size", "3", "--val-fraction", "0.3"]
    assert main(["data", "prepare", "openclipart", "--out", str(tmp_path / "a"), "--workers", "1", *opts]) == 0
    assert main(["data", "prepare", "openclipart", "--out", str(tmp_path / "b"), "--workers", "2", *opts]) == 0
    a, b = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert a and a == b
    # a re-run into the same folder with bigger shards leaves no stale shard behind
    assert main(["data", "prepare", "openclipart", "--out", str(tmp_path / "a"), "--shard-size", "100",
                 *opts[:-4], *opts[-2:]]) == 0
    assert sorted(shard_bytes(tmp_path / "a")) == ["train/00000.tar", "val/00000.tar"]


def test_openclipart_limit(clipart_root, tmp_path):
    assert main(["data", "prepare", "openclipart", "--root", str(clipart_root), "--out", str(tmp_path),
                 "--limit", "2", "--workers", "1"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    # the first two drawings by id: animals/birds/eagle_01 and animals/broken (unreadable)
    assert manifest["considered"] == 2 and manifest["samples"] == 1
    assert manifest["skipped"]["image_unreadable"] == 1 and "image_too_small" not in manifest["skipped"]
    assert manifest["options"]["limit"] == 2


def test_fashion_mnist_end_to_end(tmp_path, capsys):
    root = make_fashion_mnist(tmp_path / "fm-install", n_train=23, n_test=7)
    out = tmp_path / "fm"
    assert main(["data", "prepare", "fashion-mnist", "--root", str(root), "--out", str(out),
                 "--shard-size", "10"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["found"] == {"train": 23, "test": 7} and manifest["samples"] == 30
    assert (manifest["splits"]["train"]["shards"], manifest["splits"]["test"]["shards"]) == (3, 1)
    assert manifest["splits"]["train"]["pattern"].endswith("train/{00000..00002}.tar")
    assert manifest["splits"]["train"]["per_class"]["ankle boot"] == 2
    for split, n in (("train", 23), ("test", 7)):
        samples = read_split(manifest["splits"][split]["pattern"])
        assert len(samples) == n
        for i, s in enumerate(samples):
            meta = json.loads(s["json"])
            assert (meta["index"], meta["label"], meta["split"]) == (i, i % 10, split)
            assert any(word in s["txt"].decode() for word in meta["class_name"].split("/"))  # t-shirt/top
            im = Image.open(io.BytesIO(s["png"]))
            assert im.mode == "RGB" and im.size == (28, 28)
    assert samples[0]["__key__"] == "000000000"
    # the official split only: --val-fraction is refused with exit status 2
    assert main(["data", "prepare", "fashion-mnist", "--root", str(root), "--out", str(out),
                 "--val-fraction", "0.1"]) == 2
    assert "official train/test split" in capsys.readouterr().err


@pytest.mark.parametrize("name, package", [("openclipart", "openclipart-png openclipart-svg"),
                                           ("fashion-mnist", "dataset-fashion-mnist")])
def test_missing_install_names_the_debian_package(tmp_path, capsys, name, package):
    rc = main(["data", "prepare", name, "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("rils: error:") and "install the Debian package" in err
    assert package in err and "--root" in err


def test_missing_svg_only_names_openclipart_svg(clipart_root, tmp_path, capsys):
    root = tmp_path / "half"
    root.mkdir()
    (root / "png").symlink_to(clipart_root / "png")
    assert main(["data", "prepare", "openclipart", "--root", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "openclipart-svg" in err and "openclipart-png" not in err
