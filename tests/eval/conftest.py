"""Fixtures for the evaluation tests; the helpers they use live in eval_helpers.py."""
from __future__ import annotations

import pytest
import torch

from eval_helpers import TinyRilsLike, make_open_clip


@pytest.fixture(autouse=True)
def _one_thread():
    # These tensors are tiny: a second intra-op thread only adds synchronisation, which costs
    # seconds per test when other processes keep the cores busy.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # Never touch ~/.cache in tests: the default cache dir follows RILS_CACHE.
    monkeypatch.setenv("RILS_CACHE", str(tmp_path / "rils-cache"))


@pytest.fixture(scope="session")
def tiny_clip():
    return make_open_clip(0)


@pytest.fixture(scope="session")
def tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="session")
def transform():
    from rils.eval import eval_transform

    return eval_transform(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture
def rils_like():
    torch.manual_seed(0)
    return TinyRilsLike().eval()
