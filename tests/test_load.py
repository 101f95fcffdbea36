"""rils.load_model: checkpoints written before the factory/load split still load, and what the run
decided about its losses (method_options, τ1 among them) reaches the loaded model."""
from pathlib import Path

import torch

import rils
from rils.eval.models import default_tau

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_a_checkpoint_of_the_earlier_format_loads_and_computes_the_same():
    """tests/fixtures/old_format_rils_nano.pt was written by the code before rils/load.py existed
    (one RILS step on vit_nano8_32 with a 512-token vocabulary, τ1 set to 0.05; optimiser state
    dropped to keep the file small). Its outputs were recorded by that code, whose text tower was
    open_clip's GELU: the file records no `quick_gelu`, so it loads as GELU, not today's QuickGELU."""
    model = rils.load_model(FIXTURES / "old_format_rils_nano.pt")
    assert model.preset.quick_gelu is False
    ref = torch.load(FIXTURES / "old_format_rils_nano_outputs.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(ref["images"]), ref["encode_image"], atol=1e-5)
        assert torch.allclose(model.encode_text(ref["text"]), ref["encode_text"], atol=1e-5)
    assert model.method_options["tau_target"] == 0.05
    assert default_tau(model) == 0.05


def test_method_options_survive_the_open_clip_export(tmp_path):
    from rils.export import export_open_clip

    model = rils.load_model(FIXTURES / "old_format_rils_nano.pt")
    export_open_clip(model, tmp_path / "oc", verify=False)
    again = rils.load_model(f"local-dir:{tmp_path / 'oc'}")
    assert again.method_options["tau_target"] == 0.05


def test_a_model_without_recorded_options_uses_the_paper_tau():
    model = rils.create_model("vit_nano8_32", method="clip")
    assert default_tau(model) == rils.MethodOptions().tau_target == 0.04
