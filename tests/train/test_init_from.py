"""`init_from` (start from another run's weights, fresh optimiser) and `model.lock_image` /
`model.lock_text` (LiT: frozen towers), through the real engine on tiny settings."""
import pytest
import torch

import rils
from rils import cli
from rils.methods import get_method_class
from rils.train import engine
from rils.train.config import ConfigError, load_config
from rils.train.engine import train
from rils.train.init_from import lock_towers, part_of
from rils.train.optim import param_groups

TINY_HEADS = dict(num_prototypes=16, ssl_mlp_dim=32, ssl_emb_dim=16)


def make_batch(method, B=6, seed=0):   # as tests/test_methods.py
    g = torch.Generator().manual_seed(seed)
    captions = [f"a {c} {s}" for c, s in zip(["red", "blue", "green", "pink", "gray", "tan"],
                                             ["circle", "square", "star", "cross", "ring", "moon"])][:B]
    batch = {"image": torch.randn(B, 3, 32, 32, generator=g),
             "text": rils.get_tokenizer("vit_nano8_32")(captions), "seed": torch.arange(B) + 100 * seed}
    if method.needs_views:
        batch["views"] = torch.randn(B, 2, 3, 32, 32, generator=g)
    return batch

SMALL = ["model.preset=vit_nano8_32", "train.precision=fp32", "data.workers=0", "data.num_samples=64",
         "train.batch_size=8", "train.max_steps=3", "train.warmup_steps=1", "train.lr=1e-2",
         "train.lr_base_batch=8", "train.log_every=1", "train.device=cpu"]


def _run(out, *overrides):
    return torch.load(train(load_config("demo", [*SMALL, f"output_dir={out}", *overrides])), weights_only=True)


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip_run")
    _run(out, "method=clip")
    return out / "checkpoints" / "latest.pt"


@pytest.fixture(scope="module")
def gelu_clip_ckpt(tmp_path_factory):
    """A clip run with open_clip's GELU text tower: what vit_nano8_32 needs to export to open_clip."""
    out = tmp_path_factory.mktemp("gelu_clip_run")
    _run(out, "method=clip", "model.quick_gelu=false")
    return out / "checkpoints" / "latest.pt"


def _where(state, pred):
    return {k: v for k, v in state.items() if pred(k)}


def _trainable_count(ckpt):
    return sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"]), len(ckpt["optimizer"]["state"])


def test_init_from_clip_into_rils_with_lock_image(clip_ckpt, tmp_path, capsys):
    src = torch.load(clip_ckpt, weights_only=True)["state_dict"]
    ckpt = _run(tmp_path, "method=rils", f"init_from={clip_ckpt}", "model.lock_image=true")
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "init_from" in ln)
    assert "loaded visual.trunk, visual.head, text, logit_scale; newly initialised decoder; ignored nothing" in line
    assert "locked (frozen, no optimiser state): image tower" in err
    state = ckpt["state_dict"]
    image = [k for k in state if k.startswith("model.visual.")]
    assert image and all(torch.equal(state[k], src[k]) for k in image)     # frozen: bitwise unchanged
    assert not torch.equal(state["model.text.text_projection"], src["model.text.text_projection"])
    # frozen parameters hold no optimiser state and are in no parameter group
    method = rils.create_method("rils", rils.create_model("vit_nano8_32", method="rils"))
    lock_towers(method.model, True, 0, False)
    trainable = [n for n, p in method.named_parameters() if p.requires_grad]
    assert not any(n.startswith("model.visual.") for n in trainable)
    assert any(n.startswith("model.decoder.") for n in trainable)
    assert _trainable_count(ckpt) == (len(trainable), len(trainable))
    assert sum(len(g["params"]) for g in param_groups(method, 0.5)) == len(trainable)


def test_unlocked_groups_and_lock_text(clip_ckpt, tmp_path):
    src = torch.load(clip_ckpt, weights_only=True)["state_dict"]
    ckpt = _run(tmp_path, "method=clip", f"init_from={clip_ckpt}", "model.lock_image=true",
                "model.lock_image_unlocked_groups=1", "model.lock_text=true")
    state = ckpt["state_dict"]

    def trainable(k):
        return k.startswith(("model.visual.trunk.blocks.1.", "model.visual.trunk.norm.")) or k == "model.logit_scale"
    frozen = _where(state, lambda k: not trainable(k))
    assert all(torch.equal(v, src[k]) for k, v in frozen.items())
    assert not torch.equal(state["model.logit_scale"], src["model.logit_scale"])
    assert not torch.equal(state["model.visual.trunk.blocks.1.mlp.fc1.weight"], src["model.visual.trunk.blocks.1.mlp.fc1.weight"])
    n_trainable = len([k for k in _where(state, trainable) if "pos_embed" not in k])
    assert _trainable_count(ckpt) == (n_trainable, n_trainable)


def test_init_from_round_trips_same_method(clip_ckpt, tmp_path, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def first_step(net, method, *args, **kw):
        seen.update({k: v.detach().clone() for k, v in method.state_dict().items()})
        raise Stop

    monkeypatch.setattr(engine, "train_step", first_step)
    with pytest.raises(Stop):
        train(load_config("demo", [*SMALL, "method=clip", f"output_dir={tmp_path}", f"init_from={clip_ckpt}",
                                   "seed=7"]))
    src = torch.load(clip_ckpt, weights_only=True)["state_dict"]
    assert seen.keys() == src.keys()
    assert all(torch.equal(seen[k], src[k]) for k in src)


def test_resume_wins_over_init_from(clip_ckpt, tmp_path, capsys):
    _run(tmp_path, "method=clip")
    capsys.readouterr()
    ckpt = _run(tmp_path, "method=clip", "resume=latest", f"init_from={clip_ckpt}", "train.max_steps=4")
    err = capsys.readouterr().err
    assert "ignored: resuming from" in err and "loaded visual.trunk" not in err
    assert ckpt["step"] == 4


def test_shape_mismatch_is_one_line_exit_2(clip_ckpt, tmp_path, capsys):
    argv = ["pretrain", "-c", "demo", *SMALL, "model.preset=vit_ti8_32", "method=clip",
            f"output_dir={tmp_path}", f"init_from={clip_ckpt}"]
    assert cli.main(argv) == 2   # the `rils` entry point exits with main()'s status
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1
    assert "init_from: shape mismatch at model." in err[0]
    assert "64" in err[0] and "192" in err[0]


@pytest.mark.parametrize("overrides, match", [
    (["model.lock_image=true", "model.lock_image_unlocked_groups=-1"], "model.lock_image_unlocked_groups: must be >= 0"),
    (["model.lock_image_unlocked_groups=1"], "only means something with model.lock_image=true"),
    (["model.lock_image=true", "model.lock_image_unlocked_groups=3"], "vit_nano8_32 has 2 blocks"),
    (["method=mae", "model.lock_text=true"], "model.lock_text: mae has no text tower"),
    (["init_from=/no/such/file.pt"], "init_from: must be"),
])
def test_bad_values_are_one_line_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as exc:
        load_config("demo", [*SMALL, *overrides])
    assert "\n" not in str(exc.value)


def test_init_from_unreadable_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="init_from: .*not a rils checkpoint") as exc:
        train(load_config("demo", [*SMALL, "method=clip", f"output_dir={tmp_path / 'run'}", f"init_from={bad}"]))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", rils.list_methods())
@pytest.mark.parametrize("lock", [(True, 0, False), (True, 1, False), (False, 0, True)])
def test_every_trainable_parameter_gets_a_gradient_when_locked(name, lock):
    """DDP runs without find_unused_parameters: every parameter left trainable needs a gradient."""
    if lock[2] and not get_method_class(name).needs_text:
        pytest.skip("no text tower")
    method = rils.create_method(name, rils.create_model("vit_nano8_32", method=name), **TINY_HEADS)
    lock_towers(method.model, *lock)
    for seed in range(20):   # RILS's reconstruction term needs a non-empty set C
        out = method(make_batch(method, seed=seed))
        if out.get("matched_frac", torch.tensor(1.0)) > 0:
            break
    if not out["loss"].requires_grad:
        assert not any(p.requires_grad for p in method.parameters())
        return
    out["loss"].backward()
    no_grad = [n for n, p in method.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == []
    grads = [n for n, p in method.named_parameters() if not p.requires_grad and p.grad is not None]
    assert grads == []


def test_init_from_across_text_activations_is_refused(clip_ckpt, gelu_clip_ckpt, tmp_path, capsys):
    """The same text weights under QuickGELU and GELU are different functions: `init_from` between runs
    of the two (a checkpoint older than `model.quick_gelu` counts as GELU) stops with one line naming
    the value to set, and with that value it loads."""
    from pathlib import Path

    from rils.train.init_from import init_from

    old = Path(__file__).resolve().parents[1] / "fixtures" / "old_format_rils_nano.pt"   # recorded before the key
    for spec, run_quick_gelu, theirs in [(gelu_clip_ckpt, True, "false"), (old, True, "false"),
                                         (clip_ckpt, False, "true")]:
        method = rils.create_method("clip", rils.create_model("vit_nano8_32", method="clip", quick_gelu=run_quick_gelu))
        with pytest.raises(ConfigError, match=rf"init_from: .*set model.quick_gelu={theirs} to start from them") as e:
            init_from(method, str(spec))
        assert "\n" not in str(e.value)
    argv = ["pretrain", "-c", "demo", *SMALL, "method=clip", f"output_dir={tmp_path / 'a'}", f"init_from={gelu_clip_ckpt}"]
    assert cli.main(argv) == 2
    assert "runs GELU and this run's QuickGELU" in capsys.readouterr().err
    ckpt = _run(tmp_path / "b", "method=clip", f"init_from={gelu_clip_ckpt}", "model.quick_gelu=false")
    assert ckpt["preset"]["quick_gelu"] is False


def test_part_names():
    assert part_of("model.visual.trunk.blocks.0.attn.qkv.weight") == "visual.trunk"
    assert part_of("model.visual.head.proj.weight") == "visual.head"
    assert part_of("model.logit_scale") == "logit_scale"
    assert part_of("model.text.token_embedding.weight") == "text"
    assert part_of("model.decoder.mask_token") == "decoder"
    assert part_of("learned_prototypes") == "learned_prototypes"
    assert part_of("image_mlp.0.weight") == "image_mlp"


def test_init_from_exports(gelu_clip_ckpt, tmp_path):
    """A timm export gives the trunk alone (into a run of either text activation); an open_clip export
    (folder or local-dir:) the trunk, θ, text tower and logit scale."""
    from rils.export import export_open_clip, export_timm
    from rils.train.init_from import init_from

    src = torch.load(gelu_clip_ckpt, weights_only=True)["state_dict"]
    export_timm(gelu_clip_ckpt, tmp_path / "trunk.safetensors", verify=False)
    export_open_clip(gelu_clip_ckpt, tmp_path / "oc", verify=False)
    cases = [(str(tmp_path / "trunk.safetensors"), True, "loaded visual.trunk; newly initialised visual.head, text, "
              "logit_scale, decoder; ignored nothing", ("model.visual.trunk.",)),
             (f"local-dir:{tmp_path / 'oc'}", False, "loaded visual.trunk, visual.head, text, logit_scale; newly "
              "initialised decoder; ignored nothing", ("model.visual.", "model.text.", "model.logit_scale"))]
    for spec, quick_gelu, said, prefixes in cases:
        method = rils.create_method("rils", rils.create_model("vit_nano8_32", method="rils", quick_gelu=quick_gelu))
        assert said in init_from(method, spec)
        state = method.state_dict()
        keys = [k for k in src if k.startswith(prefixes)]
        assert keys and all(torch.allclose(state[k], src[k], atol=1e-6) for k in keys)   # pos_embed: 6e-8 off after the open_clip round trip
