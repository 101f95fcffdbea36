"""Fixtures for the export / viz / patchseg tests: one tiny trained checkpoint (2 steps of the real
trainer, vit_nano8_32) and a tiny model with every weight perturbed. CPU-sized: seconds."""
from __future__ import annotations

import pytest

from export_helpers import perturbed


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from rils.train.config import load_config
    from rils.train.engine import train

    out = tmp_path_factory.mktemp("tiny_run")
    # GELU text: these tests export vit_nano8_32 to open_clip, whose own ViT (the only layout for this
    # preset) shares its one quick_gelu flag with the text tower (rils.export.native_tower_check)
    return train(load_config("demo", ["model.preset=vit_nano8_32", "model.quick_gelu=false",
                                      "train.precision=fp32", "data.workers=0",
                                      "data.num_samples=64", "train.batch_size=4", "train.max_steps=2",
                                      f"output_dir={out}"]))


@pytest.fixture
def nano_model():
    return perturbed(quick_gelu=False)   # exported with open_clip's own ViT, as tiny_ckpt: GELU text


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RILS_CACHE", str(tmp_path / "rils-cache"))
