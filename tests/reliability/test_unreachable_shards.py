"""Shards that cannot be read are reported on the console at once (the first error of each),
and after a bounded number of them in a row the run stops with one line and exit status 1, in seconds,
instead of minutes of silence and "ran dry"."""
import sys
import time

import pytest

from rils.data.loader import DataFault, make_loader
from rils.data.samples import SampleMaker
from rils.data.transforms import train_transform
from rils.model.text import get_tokenizer

from .dirty_shards import write_dirty_shards
from .helpers import TINY, run


def stream(urls):
    maker = SampleMaker(train_transform(32), get_tokenizer(16))
    return make_loader("shards", urls, maker, seed=0, epoch=0, rank=0, world=1, batch_size=50, workers=0,
                       shuffle_buffer=10)


def test_an_unreachable_server_stops_the_run_in_seconds_with_one_line(tmp_path):
    started = time.time()
    proc = run([sys.executable, "-m", "rils", "pretrain", "-c", "demo", *TINY, "data.workers=1", "data.source=shards",
                "data.path=http://127.0.0.1:9/{0..3}.tar", "data.num_samples=100", f"output_dir={tmp_path}"],
               timeout=120)
    assert time.time() - started < 60
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-1].startswith("rils: error: data: 4 shards in a row could not be read, the last http://127.0.0.1:9/")
    assert lines[-1].endswith(".tar: Connection refused; is data.path right?")
    reported = sorted(line.split("shard ")[1] for line in lines if "cannot read shard" in line)
    assert reported == [f"http://127.0.0.1:9/{i}.tar: Connection refused" for i in range(4)]   # each once


def test_a_missing_local_shard_is_reported_once_and_the_others_are_read(tmp_path, capsys):
    good = write_dirty_shards(tmp_path).replace("{00000..00003}", "00000")
    missing = str(tmp_path / "gone.tar")                 # e.g. deleted, or a mount lost, after start-up
    batches = stream([good, missing])
    seen = sum(next(batches)["image"].shape[0] for _ in range(8))   # 400 > one pass of the good shard
    assert seen == 400
    err = capsys.readouterr().err
    assert err.count(f"cannot read shard {missing}: No such file or directory") == 1, err


def test_only_missing_local_shards_raise_at_once(tmp_path):
    started = time.time()
    with pytest.raises(DataFault, match=r"data: 2 shards in a row could not be read, the last .*: "
                                         r"No such file or directory; is data.path right\?"):
        next(stream([str(tmp_path / "a.tar"), str(tmp_path / "b.tar")]))
    assert time.time() - started < 5
