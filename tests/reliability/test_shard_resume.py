"""Exact resume on webdataset shards without decoding the samples already used. A checkpoint
records where each worker's stream stands (pass, outputs of its shuffle buffer); the resumed stream
replays the buffer's draws over positions, reads only the samples that sat in the buffer and the rest,
and yields exactly the batches the interrupted run would have. Shard sample counts come from
`sizes.json` / img2dataset's `*_stats.json` when present."""
import json
from pathlib import Path

import pytest
import torch

from rils.data.loader import make_loader, note_position
from rils.data.samples import SampleMaker
from rils.data.shards import listed_sizes, read_shard
from rils.data.sources import count_shard_samples, expand_shards
from rils.data.transforms import train_transform
from rils.model.text import get_tokenizer
from rils.train.config import load_config
from rils.train.engine import train

from .dirty_shards import TOTAL, write_dirty_shards
from .helpers import TINY, flat_params, inject_loss, records

BATCH = 30


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_dirty_shards(tmp_path_factory.mktemp("dirty"))


class CountingMaker(SampleMaker):
    calls = 0

    def __call__(self, *args, **kwargs):
        CountingMaker.calls += 1
        return super().__call__(*args, **kwargs)


def loader(urls, workers, **kw):
    maker = CountingMaker(train_transform(32), get_tokenizer(16))
    return make_loader("shards", urls, maker, seed=3, epoch=1, rank=0, world=1, batch_size=BATCH, workers=workers,
                       shuffle_buffer=100, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_yields_exactly_the_remaining_batches(shards, workers):
    urls, n, k = expand_shards(shards), 40, 13     # 40 batches of 30 > the 900 good samples: a second pass
    full, track = [], {}
    it = loader(urls, workers)
    for _ in range(n):
        batch = next(it)
        note_position(track, batch)
        full.append(batch)
        if len(full) == k:
            position = {"last_role": track["last_role"], "roles": dict(track["roles"])}
    del it
    CountingMaker.calls = 0
    resumed = loader(urls, workers, start_step=k, position=position)
    first = next(resumed)
    if workers == 0:    # the used samples are not decoded again: one batch, its skips, the one held back
        assert CountingMaker.calls <= BATCH + sum(first["skipped"].values()) + 1
    rest = [first] + [next(resumed) for _ in range(n - k - 1)]
    for a, b in zip(full[k:], rest):
        assert torch.equal(a["seed"], b["seed"]) and torch.equal(a["image"], b["image"])
        assert a["skipped"] == b["skipped"]
    seen = torch.cat([b["seed"] for b in full[:k] + rest])
    assert torch.equal(seen, torch.cat([b["seed"] for b in full]))


def test_sample_counts_come_from_the_listed_sizes(shards, tmp_path):
    urls = expand_shards(shards)
    assert count_shard_samples(urls) == TOTAL                  # from the tar headers
    folder = tmp_path / "listed"
    folder.mkdir()
    for i, u in enumerate(urls):                               # copies that claim other counts
        (folder / f"{i:05d}.tar").write_bytes(Path(u).read_bytes())
    (folder / "sizes.json").write_text(json.dumps({"00000.tar": 7, "00001.tar": 8}))
    (folder / "00002_stats.json").write_text(json.dumps({"successes": 9, "count": 12}))
    listed = expand_shards(f"{folder}/{{00000..00003}}.tar")
    assert listed_sizes(listed) == {listed[0]: 7, listed[1]: 8, listed[2]: 9}
    assert count_shard_samples(listed) == 7 + 8 + 9 + 250       # the last one is still read
    assert sum(1 for _ in read_shard(listed[3])) == 250


def test_training_resumed_from_a_checkpoint_mid_epoch_ends_bit_identical(shards, tmp_path, monkeypatch, capsys):
    """A run stopped after step 9 (checkpoint at step 8) and resumed with resume=latest ends with the
    weights of an uninterrupted run; the resume log names no replay."""
    args = [*TINY, "method=clip", "data.source=shards", f"data.path={shards}", "data.num_samples=600",
            "data.workers=1", "data.shuffle_buffer=100", "train.batch_size=20", "train.max_steps=14",
            "train.checkpoint_every=4"]
    kept = {}
    inject_loss(monkeypatch, lambda n: None, on_call=lambda n, m: kept.__setitem__("full", m))
    train(load_config("demo", [*args, f"output_dir={tmp_path / 'full'}"]))

    def stop_after_9(n, m):
        if n == 10:
            raise RuntimeError("killed")
    inject_loss(monkeypatch, lambda n: None, on_call=stop_after_9)
    with pytest.raises(RuntimeError, match="killed"):
        train(load_config("demo", [*args, f"output_dir={tmp_path / 'cut'}"]))
    inject_loss(monkeypatch, lambda n: None, on_call=lambda n, m: kept.__setitem__("cut", m))
    capsys.readouterr()
    train(load_config("demo", [*args, f"output_dir={tmp_path / 'cut'}", "resume=latest"]))
    log = capsys.readouterr().err
    assert "(step 8)" in log and "used again" not in log       # resumed from the recorded position
    assert torch.equal(flat_params(kept["full"]), flat_params(kept["cut"]))
    assert [r["step"] for r in records(tmp_path / "cut")] == list(range(1, 15))
    assert records(tmp_path / "cut")[-1]["skipped_by_reason"] == records(tmp_path / "full")[-1]["skipped_by_reason"]
