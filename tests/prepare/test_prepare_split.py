"""The train/val split is a pure function of the id."""
from __future__ import annotations

import random

from rils.data.prepare.common import split_of, stable_hash


def test_stable_hash_is_pinned():
    # blake2b, not hash(): the same on every machine, Python version and PYTHONHASHSEED
    assert stable_hash("animals/birds/eagle_01") == stable_hash("animals/birds/eagle_01")
    assert f"{stable_hash('rils'):016x}" == "9c797fff222745db"  # a change would reshuffle every split


def test_split_is_deterministic_and_about_the_fraction():
    ids = [f"cat{i % 7}/drawing_{i}" for i in range(20000)]
    first = {i: split_of(i, 0.05) for i in ids}
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert {i: split_of(i, 0.05) for i in shuffled} == first       # order does not matter
    share = sum(s == "val" for s in first.values()) / len(ids)
    assert 0.045 < share < 0.055
    assert all(split_of(i, 0.0) == "train" for i in ids[:500])
    # a larger fraction only moves train ids into val, never the other way
    wider = {i: split_of(i, 0.2) for i in ids}
    assert all(wider[i] == "val" for i in ids if first[i] == "val")
