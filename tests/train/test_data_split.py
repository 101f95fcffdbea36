"""Every sample is read once per epoch across ranks; sources read CSV and caption folders."""

import pytest
from PIL import Image

from rils.data.loader import RankBatches
from rils.data.sources import csv_source, expand_shards, folder_source


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_partition_each_epoch(world):
    n, b = 103, 4
    seen = []
    for r in range(world):
        for batch in RankBatches(n, seed=1, epoch=2, rank=r, world=world, batch_size=b):
            assert len(batch) == b
            seen += batch
    steps = n // (b * world)
    assert len(seen) == len(set(seen)) == steps * b * world


def test_rank_rows_concatenate_to_the_single_rank_batch():
    one = list(RankBatches(64, seed=0, epoch=0, rank=0, world=1, batch_size=8))
    r0 = list(RankBatches(64, seed=0, epoch=0, rank=0, world=2, batch_size=4))
    r1 = list(RankBatches(64, seed=0, epoch=0, rank=1, world=2, batch_size=4))
    assert [a + b for a, b in zip(r0, r1)] == one


def test_resume_skips_batches_without_reading_them():
    full = list(RankBatches(64, seed=0, epoch=1, rank=0, world=1, batch_size=8))
    assert list(RankBatches(64, seed=0, epoch=1, rank=0, world=1, batch_size=8, start_step=3)) == full[3:]


def test_csv_and_folder_sources(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        (tmp_path / "img" / f"{i}.txt").write_text(f"caption {i}")
    (tmp_path / "pairs.csv").write_text("filepath,caption\nimg/0.png,a red thing\nimg/1.png,another\n")
    src = csv_source(str(tmp_path / "pairs.csv"))
    assert len(src) == 2 and src.raw(0)[1] == "a red thing" and src.raw(0)[0][:4] == b"\x89PNG"
    folder = folder_source(str(tmp_path / "img"))
    assert len(folder) == 3 and folder.raw(2)[1] == "caption 2"
    with pytest.raises(ValueError, match="no column 'text'"):
        csv_source(str(tmp_path / "pairs.csv"), caption_col="text")
    with pytest.raises(FileNotFoundError, match="shard"):
        expand_shards(str(tmp_path / "{000..002}.tar"))
