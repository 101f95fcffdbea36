"""`rils eval segment` (rils.eval.dense.segment): ADE20K-layout data, MMSeg's pipeline, the UperNet
model's layer-wise decay, sliding-window inference and MMSeg's IoUMetric, end to end on a tiny
folder and a tiny rils model (CPU, seconds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rils.eval.dense import segment
from rils.eval.protocol import SEGMENT
from rils.eval.dense.seg_data import (ADE20K_CLASSES, IGNORE_INDEX, load_split, rescale_size,
                                      train_pipeline)
from rils.eval.dense.seg_heads import build_segmenter

CLASSES = ("sky", "grass", "road")
COLOURS = np.array([[90, 90, 90], [70, 130, 220], [60, 170, 60], [120, 110, 100]], np.uint8)


def _sample(h: int, w: int, seed: int):
    """An image and its ADE-convention label: blocks of labels 0 ("other") .. 3, coloured by label."""
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    label[: h // 2] = 1
    label[h // 2:, : w // 2] = 2
    label[h // 2:, w // 2:] = 3
    label[: h // 4, : w // 4] = 0
    image = COLOURS[label] + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    return image, label


def make_ade(root, train_sizes=((40, 48), (48, 40), (44, 44), (40, 56)),
             val_sizes=((36, 52), (48, 48), (16, 80)), classes=CLASSES):
    """ROOT/images|annotations/training|validation + classes.txt (the ADE20K release layout)."""
    for split, sizes in (("training", train_sizes), ("validation", val_sizes)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(sizes):
            image, label = _sample(h, w, seed=i + 10 * len(split))
            Image.fromarray(image).save(root / "images" / split / f"ADE_{split}_{i:03d}.jpg")
            Image.fromarray(label).save(root / "annotations" / split / f"ADE_{split}_{i:03d}.png")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    return make_ade(tmp_path_factory.mktemp("ade"))


@pytest.fixture(scope="module")
def tiny_model():
    import rils

    torch.manual_seed(0)
    return rils.create_model("vit_nano8_32", method="clip").eval()   # pre-trained at 32 px


@pytest.fixture(scope="module")
def finetuned(ade, tiny_model, tmp_path_factory):
    """A 3-step fine-tune at 48 px (not the trunk's 32) with predictions saved."""
    preds = tmp_path_factory.mktemp("preds")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # as conftest's _one_thread, which a module fixture runs before
    out = SEGMENT.run(
        type("Loaded", (), {"model": tiny_model})(), load_split(str(ade), "val"), load_split(str(ade), "train"),
        device="cpu", precision="fp32", extract={"num_workers": 0, "progress": False, "batch_size": 64},
        steps=3, batch_size=2, image_size=48, head_channels=16, warmup_steps=1, save_predictions=str(preds),
        return_model=True)
    torch.set_num_threads(threads)
    return out, preds


# ------------------------------------------------------------------------------------------- data

def test_split_names_classes_and_reduced_labels(ade, tmp_path):
    """train/training -> images/training, test/val/validation -> images/validation; classes.txt
    names the labels, ADE20K's 150 names otherwise; label 0 -> 255, label k -> k - 1."""
    train, val = load_split(str(ade), "train"), load_split(str(ade), "test")
    assert (train.split, val.split, len(train), len(val)) == ("training", "validation", 4, 3)
    assert load_split(str(ade), "validation").cache_id == val.cache_id != train.cache_id
    assert train.classnames == list(CLASSES) and train.skipped == {}
    image, mask = train[0]
    _, raw = _sample(40, 48, seed=80)
    assert image.shape == (3, 40, 48) and image.dtype == torch.uint8
    expected = np.where(raw == 0, IGNORE_INDEX, raw.astype(np.int64) - 1)
    assert np.array_equal(mask.numpy(), expected)

    plain = make_ade(tmp_path / "plain", classes=None)
    names = load_split(str(plain), "train").classnames
    assert len(names) == 150 and names[:3] == ["wall", "building", "sky"] and names == list(ADE20K_CLASSES)


def test_one_line_errors(ade, tmp_path):
    """A missing split folder, an image without its PNG, a label whose size differs from its image
    and a label above the class count each stop with a one-line error naming the culprit (a label
    255 is ignored, as MMSeg's reduce_zero_label leaves it)."""
    no_val = make_ade(tmp_path / "a", val_sizes=())
    (no_val / "images" / "validation").rmdir()
    with pytest.raises(FileNotFoundError, match="images/validation not found"):
        load_split(str(no_val), "val")

    orphan = make_ade(tmp_path / "b")
    (orphan / "annotations" / "training" / "ADE_training_001.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_training_001.jpg has no label PNG"):
        load_split(str(orphan), "train")

    mismatch = make_ade(tmp_path / "c")
    Image.fromarray(np.ones((10, 12), np.uint8)).save(mismatch / "annotations/training/ADE_training_002.png")
    with pytest.raises(ValueError, match=r"ADE_training_002.png is 12x10 but its image is 44x44") as e:
        load_split(str(mismatch), "train")
    assert "\n" not in str(e.value)

    too_big = make_ade(tmp_path / "d")
    label = np.full((40, 48), 2, np.uint8)
    label[0, 0], label[0, 1] = 7, 255                    # 255 is MMSeg's ignore, not a class
    Image.fromarray(label).save(too_big / "annotations/training/ADE_training_000.png")
    train = load_split(str(too_big), "train")            # found when read: labels are not pre-scanned
    with pytest.raises(ValueError, match=r"ADE_training_000.png holds label 7, above the 3 classes") as e:
        train[0]
    assert "\n" not in str(e.value)
    label[0, 0] = 3
    Image.fromarray(label).save(too_big / "annotations/training/ADE_training_000.png")
    assert train[0][1][0, :3].tolist() == [2, IGNORE_INDEX, 1]

    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_split(str(tmp_path / "nowhere"), "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_split(str(ade), "dev")


def test_rescale_and_train_pipeline():
    """MMSeg's keep-ratio rescale (long side <= 4·size, short side <= size) and a train pipeline
    output of size × size, padded bottom-right with 0 (image) and 255 (mask)."""
    assert rescale_size(512, 683, (2048, 512)) == [512, 683]
    assert rescale_size(300, 2000, (2048, 512)) == [307, 2048]     # the long side binds
    assert rescale_size(1000, 400, (2048, 512)) == [1280, 512]     # portrait: the short side binds
    from torchvision import tv_tensors

    # scale (128, 32) x 0.4 -> (51, 12) (mmcv truncates): 16x20 -> 12x15, then padded to 32x32
    tf = train_pipeline(32, (0.5,) * 3, (0.5,) * 3, ratio_range=(0.4, 0.4))
    image = tv_tensors.Image(torch.full((3, 16, 20), 255, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(16, 20, dtype=torch.int64))
    x, y = tf(image, mask)
    assert x.shape == (3, 32, 32) and y.shape == (32, 32)
    assert (y[:12, :15] == 0).all() and (y[12:] == IGNORE_INDEX).all() and (y[:, 15:] == IGNORE_INDEX).all()
    assert (x[:, 12:] == 0).all() and (x[:, :, 15:] == 0).all() and (x[:, :12, :15] != 0).all()


def test_saturation_step_is_hsv_scaling():
    """PhotoMetricDistortion's saturation step equals HSV saturation × factor, clipped at 1, with
    hue and value kept (MMSeg's cv2 HSV round trip), here against colorsys."""
    import colorsys

    from rils.eval.dense.seg_data import _scale_saturation

    rgb = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(1))
    rgb[:, 0, 0] = 0.3                                    # a grey pixel stays grey
    for factor in (0.6, 1.4, 3.0):
        out = _scale_saturation(rgb, factor)
        for y in range(4):
            for x in range(5):
                h, s_, v = colorsys.rgb_to_hsv(*rgb[:, y, x].tolist())
                expected = colorsys.hsv_to_rgb(h, min(s_ * factor, 1.0), v)
                assert out[:, y, x].tolist() == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------ model

def test_positions_resampled_at_another_size(tiny_model):
    """At --size 48 the trunk (pre-trained at 32, patch 8) gets a 6×6 position grid resampled from
    its 4×4 one (timm's resample_abs_pos_embed); at 32 the positions are the pre-trained ones."""
    from timm.layers import resample_abs_pos_embed

    pos = tiny_model.visual.trunk.pos_embed.detach()
    net = build_segmenter(tiny_model, 3, image_size=48, channels=16)
    assert net.backbone.pos_embed.shape == (1, 1 + 36, 64)
    assert torch.allclose(net.backbone.pos_embed, resample_abs_pos_embed(pos, (6, 6), num_prefix_tokens=1))
    assert torch.equal(build_segmenter(tiny_model, 3, image_size=32, channels=16).backbone.pos_embed, pos)
    net.eval()
    logits, aux = net(torch.randn(1, 3, 48, 48))
    assert logits.shape == (1, 3, 24, 24) and aux is None   # stride p/4 = 2 for patch 8; no aux in eval


def test_layer_decay_scales(tiny_model):
    """build_optimizer on the segmenter: block i of L gets lr scale 0.65^(L-i), the patch embedding,
    positions and cls token 0.65^(L+1) (MMSeg's LayerDecayOptimizerConstructor), every neck and head
    parameter 1; positions, cls token, norms and biases get no weight decay."""
    from rils.eval.dense.loop import build_optimizer

    net = build_segmenter(tiny_model, 3, image_size=32, channels=16)
    opt = build_optimizer(net, lr=1e-4, weight_decay=0.05, layer_decay=0.65)
    names = {id(p): n for n, p in net.named_parameters()}
    scale, decay = {}, {}
    for group in opt.param_groups:
        for p in group["params"]:
            scale[names[id(p)]], decay[names[id(p)]] = group["lr_scale"], group["weight_decay"]
    assert set(scale) == set(names.values())
    depth = len(net.backbone.blocks)
    for name, s in scale.items():
        if name.startswith("backbone.blocks."):
            expected = 0.65 ** (depth - int(name.split(".")[2]))
        elif name.startswith("backbone."):
            expected = 0.65 ** (depth + 1)
        else:
            expected = 1.0
        assert s == pytest.approx(expected), name
    assert decay["backbone.pos_embed"] == decay["backbone.cls_token"] == 0.0
    assert decay["backbone.blocks.0.norm1.weight"] == decay["decode_head.cls_seg.1.bias"] == 0.0
    assert decay["backbone.blocks.1.attn.qkv.weight"] == decay["decode_head.cls_seg.1.weight"] == 0.05


# ------------------------------------------------------------------------------------- inference

def test_slide_inference_places_and_averages_windows():
    """MMSeg's slide inference: every pixel gets the mean of the windows covering it, at its place,
    including windows cut short by the image (padded, then cut back)."""
    class Echo(torch.nn.Module):          # logits = the input's channels, at the input's resolution
        def forward(self, x):
            return x[:, :2] + x[:, 2:3] * 0, None

    image = torch.randn(3, 20, 70)          # shorter than the 32 crop, three windows across
    out = segment.slide_inference(Echo(), image, 2, crop=32, stride=21, batch_size=2)
    assert torch.allclose(out, image[:2], atol=1e-6)


def test_iou_metric_as_mmseg():
    """IoU = intersect / union, Acc = intersect / label area, both None where 0/0; mIoU and mAcc
    nan-means; aAcc over all labelled pixels; label 255 ignored."""
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 0])
    label = torch.tensor([0, 1, 1, 1, 255, 255, 255])
    metrics, per_class = segment.iou_metrics(segment.area_counts(pred, label, 4).numpy(), list("abcd"))
    # class 0: I 1, U 2; class 1: I 2, U 3; class 2 predicted only on ignored pixels; class 3 absent
    assert per_class[0] == {"name": "a", "IoU": 0.5, "Acc": 1.0}
    assert per_class[1] == {"name": "b", "IoU": pytest.approx(2 / 3), "Acc": pytest.approx(2 / 3)}
    assert per_class[2]["IoU"] is None and per_class[3] == {"name": "d", "IoU": None, "Acc": None}
    assert metrics == pytest.approx({"mIoU": (0.5 + 2 / 3) / 2, "aAcc": 0.75, "mAcc": (1 + 2 / 3) / 2})


# ------------------------------------------------------------------------------------ end to end

def test_finetune_end_to_end(finetuned, ade):
    """3 steps at 48 px: a loss history, positions resampled to the 6×6 grid, and metrics equal to
    an independent numpy computation from the saved prediction PNGs and the label PNGs."""
    out, preds = finetuned
    assert out["steps"] == 3 and out["train_images"] == 4 and out["stride"] == 32
    assert out["history"][-1]["step"] == 3 and np.isfinite(out["history"][-1]["loss"])
    assert out["model"].backbone.pos_embed.shape == (1, 37, 64)

    inter, union, area_label = np.zeros(3), np.zeros(3), np.zeros(3)
    labels = sorted((ade / "annotations" / "validation").glob("*.png"))
    assert sorted(p.name for p in preds.iterdir()) == [p.name for p in labels]
    for path in labels:
        gt = np.asarray(Image.open(path)).astype(np.int64)
        pr = np.asarray(Image.open(preds / path.name)).astype(np.int64)
        assert pr.shape == gt.shape and pr.min() >= 1 and pr.max() <= 3   # label convention: class k -> k+1
        keep = gt != 0
        for c in range(1, 4):
            g, p = (gt == c) & keep, (pr == c) & keep
            inter[c - 1] += (g & p).sum()
            union[c - 1] += (g | p).sum()
            area_label[c - 1] += g.sum()
    with np.errstate(invalid="ignore"):
        iou = inter / union
    assert out["metrics"]["mIoU"] == pytest.approx(np.nanmean(iou))
    assert out["metrics"]["aAcc"] == pytest.approx(inter.sum() / area_label.sum())
    assert out["metrics"]["mAcc"] == pytest.approx(np.nanmean(inter / area_label))
    assert [c["name"] for c in out["per_class"]] == list(CLASSES)
    for c, v in zip(out["per_class"], iou):
        assert (c["IoU"] is None) if np.isnan(v) else c["IoU"] == pytest.approx(v)


def test_option_errors(ade, tiny_model):
    """--steps with --epochs, a batch of 1 and --resume without --work-dir are refused up front."""
    train, val = load_split(str(ade), "train"), load_split(str(ade), "val")
    with pytest.raises(ValueError, match="--steps or --epochs"):
        segment.evaluate_segment(tiny_model, train, val, steps=2, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="--batch 1 must be at least 2"):
        segment.evaluate_segment(tiny_model, train, val, batch_size=1, device="cpu")
    with pytest.raises(ValueError, match="--resume needs"):
        segment.evaluate_segment(tiny_model, train, val, resume=True, device="cpu")
    assert segment.resolve_steps(None, 2, 4, 2) == 4 and segment.resolve_steps(None, None, 4, 2) == 160_000


def test_resume_continues_from_the_work_dir(ade, tiny_model, tmp_path):
    """A fine-tune that checkpointed its last step resumes there (no step re-run) and holds the
    same weights; without --resume the filled work dir is refused."""
    train, val = load_split(str(ade), "train"), load_split(str(ade), "val")
    opts = dict(steps=2, batch_size=2, image_size=32, head_channels=8, warmup_steps=1, device="cpu",
                precision="fp32", progress=False, work_dir=tmp_path / "run", return_model=True)
    first = segment.evaluate_segment(tiny_model, train, val, **opts)
    again = segment.evaluate_segment(tiny_model, train, val, **{**opts, "resume": True})
    assert first["resumed_from"] is None and again["resumed_from"] == 2
    assert again["metrics"] == first["metrics"]
    for (name, a), b in zip(first["model"].state_dict().items(), again["model"].state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="pass --resume"):
        segment.evaluate_segment(tiny_model, train, val, **opts)


def test_cli_record_and_one_line_error(ade, tmp_path, capsys):
    """`rils eval segment` on a rils checkpoint writes a record with mIoU/aAcc/mAcc and per-class
    rows; a folder without a validation split exits 2 with one `rils eval: error:` line."""
    import json

    from eval_helpers import write_checkpoint
    from rils.eval.cli import main
    ckpt = write_checkpoint(tmp_path / "latest.pt")
    common = ["eval", "segment", "--checkpoint", str(ckpt), "--device", "cpu", "--precision", "fp32",
              "--num-workers", "0", "--quiet", "--steps", "2", "--batch", "2", "--size", "32",
              "--head-channels", "8", "--warmup-steps", "1"]
    out = tmp_path / "seg.json"
    assert main([*common, "--dataset", str(ade), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["metrics"]) == {"mIoU", "aAcc", "mAcc"}
    assert record["split"] == "validation" and record["train_split"] == "training"
    assert record["train_images"] == 4 and record["skipped"] == {} and record["steps"] == 2
    assert [c["name"] for c in record["per_class"]] == list(CLASSES)
    capsys.readouterr()

    broken = make_ade(tmp_path / "broken", val_sizes=())
    (broken / "annotations" / "validation").rmdir()
    assert main([*common, "--dataset", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rils eval: error: ") and "annotations/validation not found" in err and "\n" not in err
