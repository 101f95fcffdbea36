"""data.unique_captions: no accumulated global batch holds two samples with the same caption."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rils.data.loader import RankBatches, unique_key_order
from rils.train.config import ConfigError, load_config
from rils.train.data import build_train_data, epoch_batches

from .helpers import TINY


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(8, 120), distinct=st.integers(4, 30), group=st.integers(1, 4), seed=st.integers(0, 99))
def test_every_aligned_group_has_distinct_keys(n, distinct, group, seed):
    rng = np.random.default_rng(seed)
    keys = [f"c{k}" for k in rng.integers(0, distinct, n)]
    group = min(group, len(set(keys)))   # fewer distinct captions than a batch is refused up front
    perm = rng.permutation(n).tolist()
    length = (n // group) * group
    order = unique_key_order(perm, keys, group, length)
    assert len(order) == length
    for lo in range(0, length, group):
        chunk = [keys[i] for i in order[lo:lo + group]]
        assert len(set(chunk)) == len(chunk)
    if len(set(keys)) == n:
        assert order == perm[:length]             # nothing to defer: the plain shuffle


def test_few_samples_are_seen_twice_with_many_copies_per_caption():
    """Fashion-MNIST's shape: 130 captions, many copies each, batch 64: only the epoch's last batches
    need topping up, so few slots hold a sample seen twice and few samples are left out."""
    rng = np.random.default_rng(0)
    n, group = 6000, 64
    keys = [f"c{k}" for k in rng.integers(0, 130, n)]
    order = unique_key_order(rng.permutation(n).tolist(), keys, group, (n // group) * group)
    repeated = len(order) - len(set(order))
    assert repeated < 0.03 * len(order), repeated


def test_ranks_split_unique_groups_and_resume_skips_alike():
    keys = [f"c{i % 7}" for i in range(60)]
    full = [b for r in range(2) for b in RankBatches(60, 3, 0, r, 2, 2, keys=keys, group=4)]
    assert len(full) == 2 * (60 // 4)
    rows = [list(RankBatches(60, 3, 0, r, 2, 2, keys=keys, group=4)) for r in range(2)]
    for t in range(len(rows[0])):
        step = rows[0][t] + rows[1][t]
        assert len({keys[i] for i in step}) == 4
    resumed = list(RankBatches(60, 3, 0, 0, 2, 2, start_step=5, keys=keys, group=4))
    assert resumed == rows[0][5:]


def _csv(tmp_path, captions):
    (tmp_path / "img").mkdir()
    lines = ["filepath,caption"]
    for i, c in enumerate(captions):
        Image.fromarray(np.full((8, 8, 3), 10 * i % 255, np.uint8)).save(tmp_path / "img" / f"{i}.png")
        lines.append(f"img/{i}.png,{c}")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.csv"


def test_the_training_batches_of_a_csv_hold_distinct_captions(tmp_path):
    path = _csv(tmp_path, [f"caption {i % 5}" for i in range(40)])   # 5 captions, 8 copies each
    args = [*TINY, "data.source=csv", f"data.path={path}", "data.num_samples=0", "train.batch_size=5"]

    def batches(flag):
        cfg = load_config("demo", [*args, f"data.unique_captions={flag}"])
        return list(epoch_batches(build_train_data(cfg), cfg, epoch=0, rank=0, world=1, start=0, pin_memory=False))

    def has_duplicates(batch):
        return len({tuple(t.tolist()) for t in batch["text"]}) < len(batch["text"])

    plain, unique = batches("false"), batches("true")
    assert len(plain) == len(unique) == 8
    assert any(has_duplicates(b) for b in plain)          # the test can tell
    assert not any(has_duplicates(b) for b in unique)
    assert torch.equal(batches("true")[3]["text"], unique[3]["text"])   # deterministic


def test_unique_captions_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.unique_captions: needs a csv or folder source"):
        load_config("demo", ["data.unique_captions=true"])
    path = _csv(tmp_path, ["a", "b", "a", "b", "a", "b"])
    cfg = load_config("demo", [*TINY, "data.source=csv", f"data.path={path}", "data.num_samples=0",
                               "train.batch_size=4", "data.unique_captions=true"])
    with pytest.raises(ValueError, match="data.unique_captions: .* has 2 distinct captions, fewer than an accumulated global batch of 4"):
        build_train_data(cfg)
