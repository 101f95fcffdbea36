import timm
import pytest
import torch

import rils
from rils.model.masking import mask_noise, random_masking


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_vit_b16_matches_the_paper():
    model = rils.create_model("vit_b16", method="rils")
    assert 85.5e6 < n_params(model.visual.trunk) < 86.5e6          # ViT-B/16 trunk ≈ 86M
    assert model.decoder is not None and len(model.decoder.blocks) == 1
    assert model.decoder.embed.out_features == 768
    assert model.text.width == 512 and len(model.text.transformer.resblocks) == 12
    assert model.text.transformer.resblocks[0].attn.num_heads == 8
    assert model.visual.head.proj.out_features == 512 and model.visual.head.proj.bias is None
    assert abs(model.logit_scale.exp().item() - 1 / 0.07) < 1e-4
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 197, 768)
        assert model.encode_image(x).shape == (1, 512)
        tokens = rils.get_tokenizer()(["a photo of a cat"])
        assert tokens.shape == (1, 77)
        assert model.encode_text(tokens).shape == (1, 512)


def test_vit_l16_trunk_size():
    model = rils.create_model("vit_l16", method="clip")
    assert 302e6 < n_params(model.visual.trunk) < 306e6             # ViT-L/16 trunk ≈ 304M
    assert model.visual.trunk.pos_embed.shape == (1, 197, 1024)


def test_parts_follow_the_method():
    assert rils.create_model("vit_nano8_32", method="mae").text is None
    assert rils.create_model("vit_nano8_32", method="clip").decoder is None
    mae = rils.create_model("vit_nano8_32", method="mae")
    assert mae.decoder.pred.out_features == 8 * 8 * 3
    assert rils.create_model("vit_nano8_32", method="rils").decoder.pred.out_features == 64


def test_tokenizer_vocabulary():
    tok = rils.get_tokenizer()
    assert len(tok.encoder) == 49408
    t = tok(["hello world"])
    assert t[0, 0].item() == tok.encoder["<start_of_text>"]


def test_masking_counts_restore_and_variety():
    B, N, ratio = 8, 196, 0.75
    ids_keep, mask, ids_restore = random_masking(torch.rand(B, N), ratio)
    assert ids_keep.shape == (B, int(N * (1 - ratio)))
    assert (mask.sum(1) == N - int(N * (1 - ratio))).all()
    assert len({tuple(m.tolist()) for m in mask}) == B                   # different per sample
    # kept positions are exactly the unmasked ones
    for b in range(B):
        assert set(ids_keep[b].tolist()) == set((~mask[b]).nonzero().flatten().tolist())
    # restore index inverts the shuffle
    x = torch.arange(N).expand(B, N)
    shuffled = torch.gather(x, 1, torch.argsort(ids_restore, dim=1))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore), x)


def test_mask_noise_from_seeds_is_per_sample():
    a = mask_noise(3, 16, "cpu", torch.tensor([1, 2, 3]))
    b = mask_noise(2, 16, "cpu", torch.tensor([3, 2]))
    assert torch.equal(a[2], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])


def test_trunk_loads_in_timm_by_name_and_matches():
    model = rils.create_model("vit_nano8_32", method="rils").eval()
    peer = timm.create_model(model.timm_model_name, pretrained=False, **model.timm_kwargs).eval()
    missing, unexpected = peer.load_state_dict(model.visual.trunk.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model.forward_features(x)
        assert torch.allclose(peer.forward_features(x), ours, atol=1e-5)
        # timm's avg pool of forward_features is our pooled feature (before θ)
        assert torch.allclose(peer.forward_head(peer.forward_features(x), pre_logits=True),
                              ours[:, 1:].mean(1), atol=1e-5)


def test_masked_pass_equals_encoding_only_the_visible_patches():
    model = rils.create_model("vit_nano8_32", method="rils").eval()
    x = torch.randn(2, 3, 32, 32)
    ids_keep, _, _ = random_masking(torch.rand(2, 16), 0.75)
    with torch.no_grad():
        patches = model.visual.embed_patches(x)
        out = model.visual.encode_patches(patches, ids_keep)
        for b in range(2):
            alone = model.visual.encode_patches(patches[b:b + 1, ids_keep[b]])
            assert torch.allclose(out[b:b + 1], alone, atol=1e-5)


def test_position_embedding_is_fixed_sincos():
    model = rils.create_model("vit_nano8_32", method="rils")
    pe = model.visual.trunk.pos_embed
    assert not pe.requires_grad and torch.all(pe[0, 0] == 0)
    assert pe[0, 1:].abs().max() <= 1.0


@pytest.mark.parametrize("name", ["vit_nano8_32", "vit_ti8_64", "vit_s16"])
def test_preset_param_counts_match_the_built_towers(name):
    """`rils presets` prints counts computed from the geometry; they are the built model's."""
    model = rils.create_model(name, method="clip")
    counts = model.preset.param_counts()
    assert counts["vision"] == sum(p.numel() for p in model.visual.parameters())
    assert counts["text"] == sum(p.numel() for p in model.text.parameters())


@pytest.mark.parametrize("depth", [1, 2])
def test_decoder_at_the_masked_patches_equals_the_full_output_there(depth):
    from rils.model.decoder import MaskedDecoder
    from rils.model.masking import masked_ids
    torch.manual_seed(0)
    dec = MaskedDecoder(16, 4, 32, 48, depth, 4, 20).train()
    ids_keep, mask, ids_restore = random_masking(torch.rand(3, 16), 0.75)
    x = torch.randn(3, 5, 32, requires_grad=True)
    at = masked_ids(ids_restore, ids_keep.shape[1])
    assert at.shape == (3, 12) and bool(mask.gather(1, at).all())
    part = dec(x, ids_restore, at=at)
    full = torch.gather(dec(x, ids_restore), 1, at.unsqueeze(-1).expand(-1, -1, 20))
    assert torch.allclose(part, full, atol=1e-6)
    (g_part,) = torch.autograd.grad(part.square().sum(), x)
    (g_full,) = torch.autograd.grad(full.square().sum(), x)
    assert torch.allclose(g_part, g_full, atol=1e-5)


def test_decoder_grad_checkpointing_keeps_fewer_activations():
    from rils.model.decoder import MaskedDecoder
    from rils.model.masking import masked_ids
    torch.manual_seed(0)
    dec = MaskedDecoder(16, 4, 32, 48, 2, 4, 20).train()
    ids_keep, _, ids_restore = random_masking(torch.rand(3, 16), 0.75)
    x = torch.randn(3, 5, 32, requires_grad=True)
    at = masked_ids(ids_restore, ids_keep.shape[1])

    def saved_bytes():
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = dec(x, ids_restore, at=at)
        return total[0], out

    plain, out_plain = saved_bytes()
    dec.grad_checkpointing = True
    kept, out_kept = saved_bytes()
    assert torch.equal(out_plain, out_kept) and kept < plain / 2


def test_masked_grad_checkpointing_keeps_fewer_activations_in_the_masked_pass_only():
    from rils.model.vision import VisionEncoder
    torch.manual_seed(0)
    enc = VisionEncoder(rils.get_preset("vit_nano8_32")).train()
    x = torch.randn(3, enc.num_patches, 64, requires_grad=True)
    ids_keep = torch.stack([torch.randperm(enc.num_patches)[:4] for _ in range(3)])

    def saved_bytes(ids):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = enc.encode_patches(x, ids)
        return total[0], out

    full, masked = saved_bytes(None), saved_bytes(ids_keep)
    enc.masked_grad_checkpointing = True
    full_on, masked_on = saved_bytes(None), saved_bytes(ids_keep)
    assert full_on[0] == full[0] and torch.equal(full_on[1], full[1])      # the intact pass as before
    assert masked_on[0] < masked[0] / 2 and torch.equal(masked_on[1], masked[1])
