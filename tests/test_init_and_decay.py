"""MAE's initialize_weights for the vision trunk, decoder and θ (the official code's), and
SLIP's weight-decay rule (no decay on ndim < 2, biases, norms; embeddings and tokens decayed)."""
import torch
from torch import nn

import rils
from rils.train.optim import param_groups


def _model(**kw):
    torch.manual_seed(0)
    return rils.create_model("vit_nano8_32", **kw)


def _xavier_bound(w):
    fan_out, fan_in = w.shape[0], w[0].numel()
    return (6.0 / (fan_in + fan_out)) ** 0.5


def test_vision_and_decoder_follow_mae_init():
    model = _model(method="rils")
    for part in (model.visual.trunk, model.decoder):
        linears = [m for m in part.modules() if isinstance(m, nn.Linear)]
        assert linears
        for m in linears:
            b = _xavier_bound(m.weight)
            assert m.weight.abs().max() <= b + 1e-6 and m.weight.abs().max() > 0.5 * b
            assert m.bias is None or torch.all(m.bias == 0)
        for m in part.modules():
            if isinstance(m, nn.LayerNorm):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    conv = model.visual.trunk.patch_embed.proj.weight
    assert conv.abs().max() <= _xavier_bound(conv) + 1e-6
    for token in (model.visual.trunk.cls_token, model.decoder.mask_token):
        assert 0.01 < float(token.std()) < 0.03
    proj = model.visual.head.proj.weight              # θ: N(0, width^-0.5), as image_projection
    assert abs(float(proj.std()) - model.preset.width ** -0.5) < 0.3 * model.preset.width ** -0.5
    # the fixed sin-cos positions stay frozen
    assert not model.visual.trunk.pos_embed.requires_grad and not model.decoder.pos_embed.requires_grad


def test_weight_decay_follows_slip():
    model = _model(method="rils")
    exempt = model.no_weight_decay()
    names = dict(model.named_parameters())
    assert all(names[n].ndim < 2 for n in exempt)
    for n in ("visual.trunk.cls_token", "decoder.mask_token", "text.positional_embedding",
              "text.token_embedding.weight"):
        assert n in names and n not in exempt, n
    assert "logit_scale" in exempt
    method = rils.create_method("rils", model)
    groups = param_groups(method, 0.5)
    decayed = {id(p) for p in groups[0]["params"]}
    by_name = dict(method.named_parameters())
    assert id(by_name["model.visual.trunk.cls_token"]) in decayed
    assert id(by_name["model.decoder.mask_token"]) in decayed
    frozen = {id(by_name["model.visual.trunk.pos_embed"]), id(by_name["model.decoder.pos_embed"])}
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert not (frozen & in_groups)
    assert all(p.ndim < 2 for p in groups[1]["params"])
