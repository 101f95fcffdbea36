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
