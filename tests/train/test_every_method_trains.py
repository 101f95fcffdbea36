"""Every method runs through the real engine: loss parts logged, checkpoint loadable."""
import json

import pytest
import torch

import rils
from rils.train.config import load_config
from rils.train.engine import train

from .helpers import TINY

EXPECTED_PARTS = {
    "clip": {"clip_loss", "i2t_acc"}, "mae": {"pixel_loss"}, "mae_clip": {"clip_loss", "pixel_loss"},
    "slip": {"clip_loss", "ssl_loss"}, "simclr": {"ssl_loss"}, "rils": {"clip_loss", "recon_loss", "matched_frac"},
    "rils_prototypes": {"clip_loss", "recon_loss", "matched_frac"},
}


@pytest.mark.parametrize("method", sorted(EXPECTED_PARTS))
def test_method_trains_and_logs(method, tmp_path):
    cfg = load_config("demo", [*TINY, f"method={method}", "train.max_steps=2", "train.batch_size=4",
                               "loss.num_prototypes=16", "loss.ssl_mlp_dim=32", "loss.ssl_emb_dim=16",
                               f"output_dir={tmp_path}", "train.precision=bf16"])
    ckpt = train(cfg)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    assert EXPECTED_PARTS[method] <= set(records[-1])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    model = rils.load_model(ckpt)
    assert model.preset.name == "vit_nano8_32"
    if model.text is not None:
        assert model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, model.preset.embed_dim)
    assert (tmp_path / "config.yaml").is_file() and list((tmp_path / "tb").iterdir())
