"""What evaluation reads from a model: τ1, the default device, the patch tokens."""
from __future__ import annotations

import torch
from torch import nn

from rils.eval.models import default_device, default_tau, has_patch_tokens, num_prefix_tokens
from rils.methods.base import MethodOptions
from rils.precision import resolve_device


def test_default_tau_is_the_trained_one():
    model = nn.Linear(1, 1)
    assert default_tau(model) == MethodOptions.tau_target == 0.04      # open_clip models record none
    model.method_options = {}
    assert default_tau(model) == MethodOptions.tau_target
    model.method_options = {"tau_target": 0.07, "tau_pred": 0.1}
    assert default_tau(model) == 0.07


def test_default_device_is_the_precision_modules():
    assert default_device() == str(resolve_device("auto"))


def test_patch_token_facts(rils_like, tiny_clip):
    assert has_patch_tokens(rils_like) and not has_patch_tokens(tiny_clip)
    assert num_prefix_tokens(rils_like) == rils_like.visual.trunk.num_prefix_tokens == 1
    assert num_prefix_tokens(tiny_clip) == 1                            # nothing declared: a cls token
    trunk = nn.Module()
    trunk.num_prefix_tokens = 5                                         # e.g. cls + 4 registers
    assert num_prefix_tokens(trunk) == 5
    with torch.no_grad():
        assert rils_like.forward_features(torch.zeros(1, 3, 32, 32)).shape[1] == 16 + 1


def test_a_run_folder_stands_for_its_latest_checkpoint(tmp_path):
    """`--checkpoint runs/NAME` (a run folder) loads NAME/checkpoints/latest.pt, with that file's hash."""
    import rils
    from eval_helpers import write_checkpoint
    from rils.eval.models import fingerprint_file, load_for_eval

    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    latest.parent.mkdir(parents=True)
    write_checkpoint(latest)
    loaded = load_for_eval(tmp_path / "run")
    assert loaded.spec == str(latest) and loaded.model_id == fingerprint_file(latest)
    assert rils.load_model(tmp_path / "run").preset.name == "vit_nano8_32"
