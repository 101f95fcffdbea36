"""The patchseg protocol: metrics against a hand-computed case, p of Eq. 8, and runs on a tiny checkpoint."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from export_helpers import images
from rils.eval import default_tau, load_for_eval, run_protocol
from rils.eval.cli import main as eval_main
from rils.eval.patchseg import (confusion_matrix, patch_probabilities, segmentation_metrics, text_prototypes,
                                upsample)

TARGET = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 0, 0],
                   [2, 2, 0, 0]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 0, 1, 1],
                 [2, 0, 0, 0],
                 [0, 0, 0, 0]])


def test_metrics_hand_computed():
    # class 0: GT 8 px, predicted 10 px, 7 right -> IoU 7 / (8 + 10 - 7) = 7/11
    # class 1: GT 4, predicted 5, 4 right -> 4/5;  class 2: GT 4, predicted 1, 1 right -> 1/4
    # class 3: in neither -> no IoU, left out of the mean
    conf = confusion_matrix(PRED, TARGET, 4)
    assert conf.sum() == 16 and np.trace(conf) == 12
    m = segmentation_metrics(conf, ["bg", "a", "b", "c"])
    assert m["per_class_iou"] == pytest.approx({"bg": 7 / 11, "a": 4 / 5, "b": 1 / 4, "c": None})
    assert m["miou"] == pytest.approx((7 / 11 + 4 / 5 + 1 / 4) / 3)
    assert m["pixel_acc"] == pytest.approx(12 / 16)
    assert m["mean_acc"] == pytest.approx((7 / 8 + 1 + 1 / 4) / 3)
    # accumulating two images = one confusion matrix over both
    both = confusion_matrix(np.stack([PRED, TARGET]), np.stack([TARGET, TARGET]), 4)
    assert both.sum() == 32 and np.trace(both) == 28


def test_upsample_nearest_and_bilinear():
    probs = torch.tensor([[[0.9, 0.2], [0.2, 0.2]], [[0.1, 0.8], [0.8, 0.8]]]).unsqueeze(0)  # [1, 2, 2, 2]
    near = upsample(probs, (4, 4), "nearest").argmax(dim=1)[0]
    assert near.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
    bil = upsample(probs, (4, 4), "bilinear")
    assert torch.allclose(bil.sum(dim=1), torch.ones(1, 4, 4))      # still distributions
    with pytest.raises(ValueError):
        upsample(probs, (4, 4), "cubic")


def test_patch_probabilities_are_eq8(tiny_ckpt):
    import rils

    model = rils.load_model(tiny_ckpt)
    tok = rils.get_tokenizer(model.context_length)
    texts = ["a red circle", "a blue square", "background"]
    protos = text_prototypes(model, tok, texts, precision="fp32")   # the reference below runs in fp32
    x = images(2, 32)
    p = patch_probabilities(model, x, protos, tau=0.04)             # [B, T, h, w]
    assert p.shape == (2, 3, 4, 4)
    with torch.no_grad():                                           # as the loss computes p (Eq. 7-8)
        f = model.visual.encode_patches(model.visual.embed_patches(x))
        f_t = F.normalize(model.visual.project(f[:, 1:]), dim=-1)
        z = F.normalize(model.encode_text(tok(texts)), dim=-1)
        ref = (f_t @ z.T / 0.04).softmax(-1)                        # [B, N, T]
    assert torch.allclose(p.permute(0, 2, 3, 1).reshape(2, 16, 3), ref, atol=1e-5)


def _check_record(rec, num_samples, side):
    m = rec["metrics"]
    assert rec["protocol"] == "patchseg" and rec["num_classes"] == 7
    assert rec["classnames"][0] == "background"
    assert 0 <= m["miou"] <= 1 and 0 <= m["pixel_acc"] <= 1
    conf = np.array(rec["confusion_matrix"])
    assert conf.sum() == num_samples * side * side                  # every pixel scored, none ignored
    assert m["pixel_acc"] == pytest.approx(np.trace(conf) / conf.sum())
    ious = [v for v in rec["per_class_iou"].values() if v is not None]
    assert m["miou"] == pytest.approx(sum(ious) / len(ious))


def test_patchseg_runs_on_tiny_checkpoint(tiny_ckpt):
    loaded = load_for_eval(tiny_ckpt)
    extract = dict(num_workers=0, progress=False, batch_size=4)
    rec = run_protocol(loaded, "patchseg", "demo-shapes", split="val",
                       dataset_options=dict(num_samples=6, image_size=32), extract=extract)
    _check_record(rec, 6, 32)
    assert rec["patch_grid"] == [4, 4]
    # 64 px masks for a 32 px model: probabilities are upsampled to the masks' resolution
    rec64 = run_protocol(loaded, "patchseg", "demo-shapes", split="val",
                         dataset_options=dict(num_samples=3), extract=extract, upsample_mode="nearest")
    _check_record(rec64, 3, 64)
    assert rec64["upsample"] == "nearest"


def test_tau_defaults_to_the_checkpoints(tiny_ckpt):
    from rils.methods.base import MethodOptions

    loaded = load_for_eval(tiny_ckpt)
    trained = loaded.model.method_options.get("tau_target", MethodOptions.tau_target)

    def run(**options):
        return run_protocol(loaded, "patchseg", "demo-shapes", split="val", precision="fp32",
                            dataset_options=dict(num_samples=2, image_size=32),
                            extract=dict(num_workers=0, progress=False), **options)

    rec = run()
    assert rec["tau"] == rec["settings"]["tau"] == trained
    loaded.model.method_options = {**loaded.model.method_options, "tau_target": 0.2}  # as if trained so
    assert run()["settings"]["tau"] == run()["tau"] == 0.2
    assert run(tau=0.05)["settings"]["tau"] == 0.05


def test_patchseg_cli(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "x.json"
    rc = eval_main(["eval", "patchseg", "--checkpoint", str(tiny_ckpt), "--dataset", "demo-shapes",
                    "--split", "val", "--num-samples", "4", "--demo-image-size", "32", "--num-workers", "0",
                    "--device", "cpu", "-q", "--background-prompts", "background.", "--out", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    _check_record(rec, 4, 32)
    assert rec["prompts"]["background"] == ["background."]
    assert rec["settings"]["tau"] == rec["tau"] == default_tau(load_for_eval(tiny_ckpt).model)  # no --tau
    assert "miou" in capsys.readouterr().out
    assert not math.isnan(rec["metrics"]["miou"])


def test_patchseg_needs_masks(tiny_ckpt, tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "data" / c / "0.png")
    with pytest.raises(ValueError, match="demo-shapes"):
        run_protocol(load_for_eval(tiny_ckpt), "patchseg", str(tmp_path / "data"),
                     extract=dict(num_workers=0, progress=False))


def test_color_masks_follow_the_layout():
    from rils.eval.datasets import DemoShapesDataset
    from rils.eval.patchseg import image_and_mask, seg_classnames

    shape_ds = DemoShapesDataset("val", task="shape", num_samples=4, image_size=32)
    color_ds = DemoShapesDataset("val", task="color", num_samples=4, image_size=32)
    assert seg_classnames(color_ds)[1:] == ["red", "green", "blue", "yellow", "purple", "orange"]
    for i in range(4):
        item = shape_ds.demo[i]
        _, kinds = image_and_mask(shape_ds, i)
        _, colors = image_and_mask(color_ds, i)
        assert np.array_equal(kinds > 0, colors > 0)                 # same regions
        dominant = kinds == item["shape"] + 1
        assert dominant.any() and (colors[dominant] == item["color"] + 1).all()


def test_open_clip_peer_gives_the_same_patch_embeddings(nano_model, tmp_path):
    import open_clip

    from rils import export as E
    from rils.eval.patchseg import patch_embeddings

    E.export_open_clip(nano_model, tmp_path / "oc", verify=False)
    peer = open_clip.create_model(f"local-dir:{tmp_path / 'oc'}").eval()
    x = images(2, 32)
    with torch.no_grad():
        assert (patch_embeddings(peer, x) - patch_embeddings(nano_model, x)).abs().max() < 1e-5
