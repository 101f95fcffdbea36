"""The text tower runs its last block at the end-of-text token only (rils.model.text): same outputs
and gradients as open_clip's own forward, less saved for the backward pass."""
import pytest
import torch
from open_clip.transformer import TextTransformer

import rils
from activations import saved_activation_bytes
from rils.model.text import EotTextTransformer, build_text_tower, used_length


def _tower_and_tokens(dtype=torch.float64):
    torch.manual_seed(0)
    preset = rils.get_preset("vit_nano8_32")
    tower = build_text_tower(preset).train().to(dtype)
    tokens = torch.randint(1, 49000, (5, preset.context_length))
    for row, eot in enumerate([2, 5, 9, 15, 15]):       # captions of different lengths, one filling the context
        tokens[row, eot] = 49407
        tokens[row, eot + 1:] = 0
    return tower, tokens


def _grads(out, tower):
    return torch.autograd.grad(out.square().sum(), [p for p in tower.parameters() if p.requires_grad])


def test_text_tower_runs_the_eot_only_path_for_every_preset():
    for name in rils.list_presets():
        tower = build_text_tower(rils.get_preset(name))
        assert type(tower) is EotTextTransformer and tower._eot_only(), name


@pytest.mark.parametrize("checkpointing", [False, True])
def test_eot_only_forward_equals_open_clips_forward(checkpointing):
    tower, tokens = _tower_and_tokens()
    tower.set_grad_checkpointing(checkpointing)
    ours, theirs = tower(tokens), TextTransformer.forward(tower, tokens)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    for g_ours, g_theirs in zip(_grads(ours, tower), _grads(theirs, tower)):
        assert torch.allclose(g_ours, g_theirs, rtol=1e-9, atol=1e-12)


def test_padding_after_the_longest_caption_is_not_run():
    tower, tokens = _tower_and_tokens()
    tokens = tokens[:4]                                # EOT at 2, 5, 9 and 15 of 16 positions
    tokens[3, 9:] = 0                                  # the last one now at 8: 10..15 are padding in every row
    tokens[3, 8] = 49407
    lengths = []
    tower.transformer.resblocks[0].register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1]))
    ours, theirs = tower(tokens), TextTransformer.forward(tower, tokens)
    assert lengths[0] == 10 and tokens.shape[1] == 16
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    for g_ours, g_theirs in zip(_grads(ours, tower), _grads(theirs, tower)):
        assert torch.allclose(g_ours, g_theirs, rtol=1e-9, atol=1e-12)


def test_off_a_cpu_and_compiled_the_whole_context_runs():
    # no host read where it would synchronise a device or break a compiled graph
    assert used_length(torch.tensor([2, 5], device="meta"), 16) == 16
    assert torch.compile(used_length, backend="eager", fullgraph=True)(torch.tensor([2, 5]), 16) == 16
    assert used_length(torch.tensor([2, 5]), 16) == 6


def test_eot_only_forward_in_bf16_autocast_matches_open_clip():
    tower, tokens = _tower_and_tokens(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = tower(tokens), TextTransformer.forward(tower, tokens)
    assert ours.dtype == theirs.dtype
    assert torch.allclose(ours.float(), theirs.float(), atol=0.02 * theirs.float().abs().max().item())


def test_eot_only_last_block_saves_less_for_backward():
    tower, tokens = _tower_and_tokens(torch.float32)

    def saved_bytes(forward):
        return saved_activation_bytes(lambda: forward(tower, tokens), tower)[0]

    ours, theirs = saved_bytes(EotTextTransformer.forward), saved_bytes(TextTransformer.forward)
    layers = len(tower.transformer.resblocks)
    # the last block keeps its keys, values and norm input at every position and little else
    assert ours < theirs * (1 - 0.5 / layers)


def test_configurations_it_does_not_cover_take_open_clips_forward():
    tower, tokens = _tower_and_tokens()
    tower.pool_type = "last"
    assert not tower._eot_only()
    assert torch.equal(tower(tokens), TextTransformer.forward(tower, tokens))


def test_every_preset_builds_a_quickgelu_text_tower_and_a_gelu_trunk():
    """QuickGELU, the authors' and OpenAI CLIP's text activation, is every preset's default, for every
    method with text; `quick_gelu=False` builds open_clip's GELU. The vision trunk is timm's GELU
    either way. (Built on the meta device: only the modules are looked at.)"""
    from open_clip.transformer import QuickGELU

    def activations(model):
        return ({type(b.mlp.gelu) for b in model.text.transformer.resblocks},
                {type(b.mlp.act) for b in model.visual.trunk.blocks})

    for name in rils.list_presets():
        with torch.device("meta"):
            for method in ("rils", "clip", "slip", "mae_clip"):
                assert activations(rils.create_model(name, method=method)) == ({QuickGELU}, {torch.nn.GELU}), \
                    (name, method)
            gelu = rils.create_model(name, method="clip", quick_gelu=False)
        assert activations(gelu) == ({torch.nn.GELU}, {torch.nn.GELU}), name
        assert gelu.preset.quick_gelu is False and rils.get_preset(name).quick_gelu is True


def test_the_activation_is_recorded_and_a_record_without_it_is_gelu():
    """The preset a checkpoint or an export records carries `quick_gelu`; a record written before the
    setting existed (no such key) was a GELU run and loads as one."""
    from rils.presets import preset_from_record

    record = rils.get_preset("vit_nano8_32").to_dict()
    assert record["quick_gelu"] is True and preset_from_record(record).quick_gelu is True
    older = {k: v for k, v in record.items() if k != "quick_gelu"}
    assert preset_from_record(older).quick_gelu is False
    assert preset_from_record({**record, "quick_gelu": False}).quick_gelu is False
