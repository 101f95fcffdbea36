"""`rils eval detect`: COCO-layout data (ids, crowds, polygons and RLE, one-line errors), the rils
trunk inside ViTDet's samvit, ViTDet's layer-wise decay, a tiny fine-tune end to end whose AP is
pycocotools' on the saved predictions, and the low-shot subset."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import rils
from rils.eval.dense.det_data import LargeScaleJitter, TrainImages, train_subset
from rils.eval.dense.detect import coco_metrics, load_split
from rils.eval.protocol import DETECT as PROTOCOL
from rils.eval.dense.vitdet import build_detector, global_blocks, samvit_state, vitdet_trunk

CATS = [{"id": 3, "name": "box"}, {"id": 7, "name": "disc"}, {"id": 12, "name": "unused"}]
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
TINY_HEADS = dict(fpn_channels=16, box_head_dim=32, rpn_batch=32, roi_batch=32, proposals=30)


def _rle(mask: np.ndarray) -> dict:
    from faster_coco_eval.core import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F").astype(np.int64)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()
    return {"size": list(mask.shape), "counts": counts}


def _image(folder, name, size, objects, seed):
    """An image with filled rectangles (polygon annotations) and discs (RLE annotations)."""
    w, h = size
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(60, 90, (h, w, 3), dtype=np.uint8))
    draw, anns = ImageDraw.Draw(im), []
    for kind, (x0, y0, x1, y1) in objects:
        mask = Image.new("L", (w, h))
        colour = (220, 40, 40) if kind == "box" else (40, 40, 220)
        shape = "rectangle" if kind == "box" else "ellipse"
        getattr(draw, shape)([x0, y0, x1 - 1, y1 - 1], fill=colour)
        getattr(ImageDraw.Draw(mask), shape)([x0, y0, x1 - 1, y1 - 1], fill=1)
        m = np.asarray(mask)
        segm = [[x0, y0, x1, y0, x1, y1, x0, y1]] if kind == "box" else _rle(m)
        anns.append({"category_id": 3 if kind == "box" else 7, "bbox": [x0, y0, x1 - x0, y1 - y0],
                     "area": int(m.sum()), "iscrowd": 0, "segmentation": segm})
    im.save(folder / name)
    return {"file_name": name, "width": w, "height": h}, anns


def make_coco(root, n_train: int = 8, n_val: int = 4):
    """ROOT/{train,val}2017 + annotations: image ids 100+i, category ids 3, 7, 12 (12 unused);
    image 0 of each split has no objects; train image 1 has one object plus a crowd region, train
    image 2 only a crowd region; discs are RLE, boxes polygons, the crowd uncompressed RLE."""
    (root / "annotations").mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_val)):
        folder = root / f"{split}2017"
        folder.mkdir()
        images, annotations = [], []
        for i in range(n):
            size = (48, 40) if i % 2 else (40, 48)
            objects = [] if i == 0 else [("box", (4 + i, 6, 20 + i, 24)), ("disc", (22, 20 + i % 3, 38, 36))]
            one = split == "train" and i in (1, 2)
            info, anns = _image(folder, f"{i:04d}.png", size, objects[:1] if one else objects, i)
            if split == "train" and i in (1, 2):
                crowd = np.zeros((size[1], size[0]), np.uint8)
                crowd[28:38, 2:30] = 1
                anns = anns[:1] if i == 1 else []
                anns.append({"category_id": 7, "bbox": [2, 28, 28, 10], "area": int(crowd.sum()), "iscrowd": 1,
                             "segmentation": _uncompressed_rle(crowd)})
            images.append({"id": 100 + i, **info})
            annotations += [{"id": len(annotations) + k + 1, "image_id": 100 + i, **a} for k, a in enumerate(anns)]
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": CATS}))
    return root


def pycocotools_stats(json_path, results: list[dict], iou_type: str) -> list:
    """AP, AP50, AP75, APs, APm, APl by pycocotools (mask AP from results without boxes, as detectron2)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(json_path))
    dets = [{k: v for k, v in r.items() if not (iou_type == "segm" and k == "bbox")} for r in results]
    ev = COCOeval(gt, gt.loadRes(dets), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [None if v < 0 else float(v) for v in ev.stats[:6]]


@pytest.fixture
def coco(tmp_path):
    return make_coco(tmp_path / "coco")


def test_targets_leave_out_crowds_and_labels_round_trip(coco):
    """Crowd regions are not training targets; images with none or only crowds do not train;
    category ids map to labels 1..K in id order and back; polygons and RLE both become masks."""
    train = load_split(str(coco), "train")
    assert train.split == "train" and train.skipped == {} and len(train) == 8
    assert train.classnames == ["box", "disc", "unused"] and train.cache_id
    assert [train.category_id(train.label_of[c]) for c in (3, 7, 12)] == [3, 7, 12]
    assert train.label_of == {3: 1, 7: 2, 12: 3}
    assert train.annotated() == [1, 3, 4, 5, 6, 7]        # 0: no objects, 2: a crowd only
    t = train.target(1)                                 # one box + a crowd disc-category region
    assert t["labels"].tolist() == [1] and t["boxes"].tolist() == [[5.0, 6.0, 21.0, 24.0]]
    assert t["masks"].shape == (1, 40, 48) and t["masks"][0, 6:24, 5:21].all() and t["masks"].sum() == 16 * 18
    t = train.target(3)                                 # polygon box and RLE disc
    assert t["labels"].tolist() == [1, 2] and t["masks"][1].sum() > 150
    assert load_split(str(coco), "test").json_path.name == "instances_val2017.json"


def test_predictions_are_coco_results_in_the_datasets_ids(coco):
    """A detector output (labels 1..K, xyxy boxes, mask probabilities) becomes COCO results: the
    JSON's own category ids, xywh boxes, masks thresholded at 0.5 as compressed RLE with str counts."""
    from faster_coco_eval.core import mask as mask_util

    from rils.eval.dense.detect import coco_results

    data = load_split(str(coco), "val")
    masks = torch.zeros(2, 1, 40, 48)
    masks[0, 0, 5:10, 6:20], masks[1, 0, 20:30, 30:40] = 0.9, 0.4
    masks[1, 0, 22:24, 32:35] = 0.6
    out = {"boxes": torch.tensor([[6.0, 5.0, 20.0, 10.0], [30.0, 20.0, 40.0, 30.0]]),
           "labels": torch.tensor([2, 3]), "scores": torch.tensor([0.9, 0.25]), "masks": masks}
    res = coco_results(out, 101, data.category_id)
    assert [r["category_id"] for r in res] == [7, 12] and [r["image_id"] for r in res] == [101, 101]
    assert res[0]["bbox"] == [6.0, 5.0, 14.0, 5.0] and res[1]["score"] == 0.25
    assert all(isinstance(r["segmentation"]["counts"], str) for r in res)
    decoded = [mask_util.decode({**r["segmentation"], "counts": r["segmentation"]["counts"].encode()}) for r in res]
    assert decoded[0].sum() == 5 * 14 and decoded[1].sum() == 2 * 3 and decoded[1][22:24, 32:35].all()


def test_large_scale_jitter_pads_with_the_mean_and_keeps_boxes_on_masks(coco):
    """At a fixed ½ scale the image fills the top-left of the square and the rest is the mean colour
    (normalised: 0, as detectron2 pads); boxes and masks stay together through flip and resize."""
    data = load_split(str(coco), "train")
    view = TrainImages(data, [3], 64, (0.25, 0.5, 0.75))
    view.lsj = LargeScaleJitter(64, (0.25, 0.5, 0.75), scale_range=(0.5, 0.5))
    image, target = view[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert torch.allclose(image[:, -1, -1], torch.tensor([0.25, 0.5, 0.75]))
    assert target["masks"].shape == (2, 64, 64) and target["labels"].tolist() == [1, 2]
    for box, mask in zip(target["boxes"], target["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert abs(xs.min() - box[0]) <= 1 and abs(ys.max() + 1 - box[3]) <= 1


def test_one_line_errors(coco, tmp_path):
    """Unparsable JSON names the file; images the JSON names but the folder lacks are counted and
    the first few named; a missing split names the file it looked for."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON at line 1") as e:
        load_split(str(coco), "val", val_json=str(bad))
    assert "\n" not in str(e.value)
    for i in range(4):
        (coco / "train2017" / f"{i:04d}.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"4 image\(s\) named in .*instances_train2017\.json are "
                                                r"missing from .*: 0000\.png, 0001\.png, 0002\.png \.\.\.$"):
        load_split(str(coco), "train")
    (coco / "annotations" / "instances_val2017.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no test split in .*instances_val2017\.json not found"):
        load_split(str(coco), "test")
    with pytest.raises(ValueError, match="split must be train, val or test"):
        load_split(str(coco), "minival")


def test_rils_trunk_loads_into_samvit(tmp_path):
    """Only the relative positions are new; patch embeddings agree; positions are the trunk's
    without the cls row; four global blocks; a key that fits nowhere is an error naming it."""
    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method="clip", depth=8)
    trunk = model.visual.trunk
    state = samvit_state(trunk, 4)
    assert "cls_token" not in state and "neck.weight" in state and "norm.weight" not in state
    net = vitdet_trunk(model, 32, window_size=2)      # 32 px: the pre-training grid, 4×4
    assert [i for i, b in enumerate(net.blocks) if b.window_size == 0] == global_blocks(8) == [1, 3, 5, 7]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.patch_embed(x).flatten(1, 2), trunk.patch_embed(x), atol=1e-6)
    assert torch.equal(net.pos_embed.flatten(1, 2), trunk.pos_embed[:, 1:])
    fresh = type(net)(img_size=32, patch_size=8, embed_dim=64, depth=8, num_heads=2, window_size=2,
                      global_attn_indexes=global_blocks(8), use_rel_pos=True, neck_chans=0, num_classes=0)
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert unexpected == [] and missing and all(".attn.rel_pos_" in k for k in missing)
    assert global_blocks(12) == [2, 5, 8, 11]
    trunk.register_parameter("extra_token", torch.nn.Parameter(torch.zeros(1, 1, 64)))
    with pytest.raises(ValueError, match="unexpected .*extra_token"):
        vitdet_trunk(model, 32)


def test_layer_decay_is_vitdet():
    """Positions and patch embedding get decay^(L+1), block i decay^(L-i), FPN and heads the full lr;
    positions and 1-d weights are not decayed."""
    from rils.eval.dense.loop import build_optimizer

    det = build_detector(rils.create_model("vit_nano8_32", method="clip"), 3, size=32, **TINY_HEADS)
    opt = build_optimizer(det, lr=1.0, weight_decay=0.1, layer_decay=0.5)
    scale, decay = {}, {}
    for g in opt.param_groups:
        for p in g["params"]:
            scale[id(p)], decay[id(p)] = g["lr_scale"], g["weight_decay"]
    named = dict(det.named_parameters())
    assert scale[id(named["backbone.body.pos_embed"])] == 0.5 ** 3
    assert scale[id(named["backbone.body.blocks.0.attn.qkv.weight"])] == 0.5 ** 2
    assert scale[id(named["backbone.body.blocks.1.mlp.fc1.weight"])] == 0.5
    assert scale[id(named["backbone.fpn.outputs.0.0.0.weight"])] == 1.0
    assert scale[id(named["roi_heads.box_predictor.cls_score.weight"])] == 1.0
    assert decay[id(named["backbone.body.pos_embed"])] == 0.0
    assert decay[id(named["backbone.body.blocks.0.attn.qkv.weight"])] == 0.1


def test_metrics_equal_pycocotools_on_noisy_predictions(coco):
    """bbox and segm AP (all six numbers) are pycocotools' COCOeval on the same results, on
    predictions good enough to give a non-trivial AP; LVIS-style data adds APr/APc/APf."""
    val = load_split(str(coco), "val")
    rng = np.random.default_rng(0)
    results = []
    for a in val.coco.dataset["annotations"]:
        box = (np.array(a["bbox"]) + rng.normal(0, 1.5, 4)).tolist()
        segm = _rle(val.coco.annToMask(a))
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": box,
                        "score": float(rng.uniform(0.3, 1)), "segmentation": segm})
        results.append({"image_id": a["image_id"], "category_id": 10 - a["category_id"], "bbox": box,
                        "score": float(rng.uniform(0.2, 0.9)), "segmentation": segm})
    ours = coco_metrics(val.coco, results)
    for iou_type in ("bbox", "segm"):
        assert [ours[iou_type][k] for k in STATS] == pytest.approx(pycocotools_stats(val.json_path, results, iou_type))
        assert 0.2 < ours[iou_type]["AP"] < 1.0

    data = json.loads(val.json_path.read_text())
    for c, f in zip(data["categories"], "fcr"):
        c["frequency"] = f
    lvis_json = coco / "annotations" / "lvis_v1_val.json"
    lvis_json.write_text(json.dumps(data))
    lvis = load_split(str(coco), "val", val_json=str(lvis_json))
    assert lvis.lvis and not val.lvis
    m = coco_metrics(lvis.coco, results, lvis=True)
    assert m["bbox"]["APf"] > 0.2 and m["bbox"]["APr"] is None  # category 12 ("r") has no instances


def test_finetune_end_to_end_matches_pycocotools_and_records_the_subset(coco, tmp_path):
    """A few steps of a tiny detector on half the annotated images (seed 1): the result records that
    subset, the predictions file uses the dataset's category ids and compressed RLE, and the reported
    AP is pycocotools' COCOeval on that file."""
    torch.manual_seed(0)
    model = rils.create_model("vit_nano8_32", method="clip")
    train, test = load_split(str(coco), "train"), load_split(str(coco), "test")
    preds, work = tmp_path / "preds.json", tmp_path / "work"
    out = PROTOCOL.run(SimpleNamespace(model=model), test, train, device="cpu", precision="fp32",
                       extract={"num_workers": 0, "progress": False, "batch_size": 64},
                       size=64, batch=2, steps=3, warmup_steps=1, max_dets=10, score_thresh=0.0,
                       train_fraction=0.5, seed=1, work_dir=str(work), save_predictions=str(preds),
                       val_json=None, **TINY_HEADS)
    chosen = [train.annotated()[j] for j in np.sort(np.random.default_rng(1).choice(6, 3, replace=False))]
    assert train_subset(train.annotated(), 0.5, 1) == chosen != train_subset(train.annotated(), 0.5, 2)
    assert out["train_images"] == 3 and out["train_images_annotated"] == 6 and out["steps"] == 3
    assert json.loads((work / "train_image_ids.json").read_text()) == [train.image_ids[i] for i in chosen]

    results = json.loads(preds.read_text())
    assert len(results) == out["num_predictions"] > 0
    assert {r["category_id"] for r in results} <= {3, 7, 12}
    assert {r["image_id"] for r in results} <= {100, 101, 102, 103}
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    for iou_type in ("bbox", "segm"):
        reported = [out["metrics"][iou_type][k] for k in STATS]
        assert reported == pytest.approx(pycocotools_stats(test.json_path, results, iou_type))


def test_cli_record_explicit_json_and_one_line_error(coco, tmp_path, capsys):
    """`rils eval detect` on a rils checkpoint writes a record with bbox and segm AP; `--val-json`
    replaces the layout's file (here one naming two images); an unparsable JSON exits 2 with one
    `rils eval: error:` line naming it."""
    from eval_helpers import write_checkpoint
    from rils.eval.cli import main
    ckpt = write_checkpoint(tmp_path / "latest.pt")
    val = json.loads((coco / "annotations" / "instances_val2017.json").read_text())
    val["images"] = val["images"][:2]
    val["annotations"] = [a for a in val["annotations"] if a["image_id"] in (100, 101)]
    (tmp_path / "two.json").write_text(json.dumps(val))
    common = ["eval", "detect", "--checkpoint", str(ckpt), "--device", "cpu", "--precision", "fp32",
              "--num-workers", "0", "--quiet", "--steps", "1", "--batch", "2", "--size", "32",
              "--fpn-channels", "16", "--box-head-dim", "32", "--rpn-batch", "16", "--roi-batch", "16",
              "--proposals", "20", "--dataset", str(coco)]
    out = tmp_path / "det.json"
    assert main([*common, "--val-json", str(tmp_path / "two.json"), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["metrics"]) == {"bbox", "segm"} and set(record["metrics"]["segm"]) == set(STATS)
    assert record["num_test"] == 2 and record["train_images"] == 6 and record["steps"] == 1
    assert record["split"] == "test" and record["skipped"] == {} and record["lvis"] is False
    printed = capsys.readouterr().out
    assert "bbox AP50" in printed and "segm AP" in printed

    (tmp_path / "bad.json").write_text("{")
    assert main([*common, "--val-json", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rils eval: error: ") and "bad.json is not valid JSON" in err and "\n" not in err
