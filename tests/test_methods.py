import pytest
import torch

import rils

TINY = dict(num_prototypes=16, ssl_mlp_dim=32, ssl_emb_dim=16)


def make_batch(method, B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    captions = [f"a {c} {s}" for c, s in zip(["red", "blue", "green", "pink", "gray", "tan"],
                                             ["circle", "square", "star", "cross", "ring", "moon"])][:B]
    batch = {"image": torch.randn(B, 3, 32, 32, generator=g),
             "text": rils.get_tokenizer("vit_nano8_32")(captions),
             "seed": torch.arange(B) + 100 * seed}
    if method.needs_views:
        batch["views"] = torch.randn(B, 2, 3, 32, 32, generator=g)
    return batch


@pytest.mark.parametrize("name", rils.list_methods())
def test_forward_backward_reaches_every_parameter(name):
    model = rils.create_model("vit_nano8_32", method=name)
    method = rils.create_method(name, model, **TINY)
    # RILS's reconstruction term only flows through images in C; pick a batch where C is not empty.
    for seed in range(20):
        out = method(make_batch(method, seed=seed))
        if out.get("matched_frac", torch.tensor(1.0)) > 0:
            break
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    out["loss"].backward()
    no_grad = [n for n, p in method.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == []
    frozen = [n for n, p in method.named_parameters() if not p.requires_grad]
    assert all("pos_embed" in n or n.startswith("teacher.") for n in frozen)   # fixed positions, the frozen teacher
    assert any(n.startswith("teacher.") for n in frozen) == method.needs_teacher


def test_rils_loss_is_eq_10():
    model = rils.create_model("vit_nano8_32", method="rils")
    method = rils.create_method("rils", model, lambda_contra=1.0, lambda_recon=0.5)
    out = method(make_batch(method))
    assert torch.allclose(out["loss"], out["clip_loss"] + 0.5 * out["recon_loss"])


def test_rils_masks_follow_sample_seeds():
    model = rils.create_model("vit_nano8_32", method="rils").eval()
    method = rils.create_method("rils", model)
    batch = make_batch(method)
    a, b = method(batch), method(batch)
    assert torch.equal(a["loss"], b["loss"])


def test_unknown_method_and_option():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        rils.create_model("vit_nano8_32", method="nope")
    with pytest.raises(ValueError, match="tau_bogus"):
        rils.create_method("rils", rils.create_model("vit_nano8_32"), tau_bogus=1)
    with pytest.raises(ValueError, match="unknown preset"):
        rils.create_model("vit_huge")


def test_rils_recon_reads_the_decoder_at_the_masked_patches_only():
    """RILS decodes only the masked patches; Eq. 9 from the full decoder output with the mask agrees."""
    from rils import losses as L
    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method="rils")
    method = rils.create_method("rils", model)
    for seed in range(20):   # a batch where C is not empty
        batch = make_batch(method, seed=seed)
        feats = method.features(batch)
        out = method.loss_from(batch, feats)
        if out["matched_frac"] > 0:
            break
    visual = model.visual
    g = model.decoder(visual.encode_patches(feats["patches"], feats["ids_keep"]), feats["ids_restore"])
    _, matched, all_text = method.contrastive(feats["image"], feats["text"], None)
    ref = L.language_space_reconstruction_loss(visual.project(feats["f"][:, 1:]), visual.project(g),
                                               all_text, feats["mask"], matched)
    assert out["matched_frac"] > 0
    assert torch.allclose(out["recon_loss"], ref, atol=1e-6)


@pytest.mark.parametrize("name,towers", [("rils", "all"), ("mae", "all"), ("rils", "masked")])
def test_grad_checkpointing_gives_the_same_loss_and_gradients(name, towers):
    """model.grad_checkpointing recomputes every tower's blocks in the backward pass (the decoder's
    included), model.masked_grad_checkpointing the masked pass and the decoder alone: the loss and every gradient
    must be those of the plain step."""
    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method=name, drop_path_rate=0.1)
    method = rils.create_method(name, model, **TINY).train()
    batch = make_batch(method, seed=3)
    grads = []
    for on in (False, True):
        model.set_grad_checkpointing(on and towers == "all", masked=on)
        method.zero_grad(set_to_none=True)
        torch.manual_seed(1)                     # the same mask and drop-path draws in both runs
        out = method(batch)
        out["loss"].backward()
        grads.append((out["loss"].detach(), {n: p.grad.clone() for n, p in method.named_parameters()
                                             if p.grad is not None}))
    (loss0, g0), (loss1, g1) = grads
    assert model.decoder.grad_checkpointing and model.visual.masked_grad_checkpointing
    assert model.visual.grad_checkpointing == (towers == "all")
    assert torch.allclose(loss0, loss1, atol=1e-6) and g0.keys() == g1.keys() and any("decoder" in n for n in g0)
    assert all(torch.allclose(g0[n], g1[n], atol=1e-6) for n in g0), [n for n in g0 if not torch.allclose(g0[n], g1[n], atol=1e-6)]
