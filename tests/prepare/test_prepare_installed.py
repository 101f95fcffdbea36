"""A few items of the real Debian installs, when this machine has them (the synthetic tests in
test_prepare_end_to_end.py run everywhere; these check the real file layout and metadata)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rils.data.prepare import prepare

OPENCLIPART = Path("/usr/share/openclipart")
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (OPENCLIPART / "svg").is_dir(), reason="openclipart-png/-svg not installed")
def test_installed_openclipart(tmp_path):
    m = prepare("openclipart", tmp_path, limit=12, workers=1, image_size=64)
    assert m["found_png_paths"] > 1000 and m["considered"] == 12 and m["samples"] >= 10
    assert m["svg_metadata"].get("ok", 0) >= 10
    assert json.loads((tmp_path / "manifest.json").read_text())["samples"] == m["samples"]


@pytest.mark.skipif(not (FASHION / "t10k-labels-idx1-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed")
def test_installed_fashion_mnist(tmp_path):
    m = prepare("fashion-mnist", tmp_path, limit=20)
    assert m["found"] == {"train": 60000, "test": 10000} and m["samples"] == 40
