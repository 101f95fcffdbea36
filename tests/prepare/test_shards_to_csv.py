"""`rils data shards-to-csv` turns webdataset shards into image files and a CSV, and the refusal of
`data.unique_captions` on shards names that installed command."""
from __future__ import annotations

import csv
import io
import tarfile

import pytest
from PIL import Image

from rils.cli import main
from rils.train.config import ConfigError, load_config


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(path, samples):
    """samples: (key, {suffix: bytes})."""
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path):
    """Two shards whose keys repeat (each written from 0), a sample without a caption, one without an image."""
    folder = tmp_path / "shards"
    folder.mkdir()
    write_shard(folder / "00000.tar", [("000000", {"png": _png("red"), "txt": b"a red square"}),
                                       ("000001", {"png": _png("blue"), "txt": "a bl\u00fce square".encode()}),
                                       ("000002", {"png": _png("green")})])
    write_shard(folder / "00001.tar", [("000000", {"jpg": _png("red"), "txt": b"a red square"}),
                                       ("000001", {"txt": b"no image"})])
    return str(folder / "{00000..00001}.tar")


def test_shards_to_csv_writes_images_and_a_csv_a_csv_source_reads(shards, tmp_path, capsys):
    """Every sample with an image and a caption becomes a file (its bytes as stored) and a CSV row with
    a path relative to the CSV; the others are counted; the CSV trains with data.unique_captions."""
    out = tmp_path / "out" / "pairs.csv"
    assert main(["data", "shards-to-csv", shards, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 samples from 2 shard(s), 1 skipped (no_caption), 1 skipped (no_image)" in printed
    assert f"data.source=csv data.path={out}" in printed
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["caption"] for r in rows] == ["a red square", "a bl\u00fce square", "a red square"]
    files = [out.parent / r["filepath"] for r in rows]
    assert len(set(files)) == 3 and all(f.parent == out.parent / "pairs_images" for f in files)
    assert files[0].read_bytes() == _png("red") and files[2].suffix == ".jpg"
    cfg = load_config("demo", ["data.source=csv", f"data.path={out}", "data.unique_captions=true",
                               "train.batch_size=2", f"output_dir={tmp_path / 'run'}"])
    assert cfg.data.unique_captions


def test_shards_to_csv_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["data", "shards-to-csv", str(tmp_path / "{00000..00001}.tar"), str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rils data shards-to-csv: error: shards: 2 shard(s) not found")
    write_shard(tmp_path / "00000.tar", [("0", {"txt": b"no image"})])
    assert main(["data", "shards-to-csv", str(tmp_path / "00000.tar"), str(tmp_path / "x.csv")]) == 2
    assert "has both an image" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_unique_captions_on_shards_names_the_command():
    with pytest.raises(ConfigError, match=r"rils data shards-to-csv PATTERN OUT\.csv"):
        load_config("demo", ["data.source=shards", "data.path=x/{0..1}.tar", "data.unique_captions=true"])
