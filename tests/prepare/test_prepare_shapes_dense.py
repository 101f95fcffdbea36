"""`rils data prepare shapes-dense`: the ADE20K and COCO layouts it writes, read back with PIL and
pycocotools (not with the code that wrote them), checked against each other pixel by pixel."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rils.cli import main
from rils.data.demo import SHAPES
from rils.data.prepare import prepare_shapes_dense
from rils.data.prepare import shapes_dense as sd

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as coco_mask  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

N = {"train": 12, "val": 6}
SEED = 6  # chosen so that both splits hold a shape hidden down to an unannotated sliver
ADE = {"train": "training", "val": "validation"}
COCO_SPLIT = {"train": "train2017", "val": "val2017"}
CLASSES = ["background", "circle", "square", "triangle", "star", "cross", "ring"]
# pycocotools' RLE decoding under NumPy 2; not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def all_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def interior(a: np.ndarray) -> np.ndarray:
    return a[2:-2, 2:-2]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes-dense")
    prepare_shapes_dense(out, image_size=64, train=N["train"], val=N["val"], seed=SEED)
    return out


@pytest.fixture(scope="module")
def cocos(out):
    return {s: COCO(str(out / "coco" / "annotations" / f"instances_{COCO_SPLIT[s]}.json")) for s in N}


def labels(out: Path, split: str, index: int) -> np.ndarray:
    return np.asarray(Image.open(out / "ade" / "annotations" / ADE[split] / f"{index:06d}.png"))


def test_layout_has_exactly_the_promised_files(out):
    """Every split has stems 000000..N-1 in ade/images, ade/annotations and coco/<split>, nothing
    else; classes.txt names labels 1..7; the manifest counts what is there and names no path."""
    names = set(all_bytes(out))
    expected = {"ade/classes.txt", "manifest.json", "coco/annotations/instances_train2017.json",
                "coco/annotations/instances_val2017.json"}
    for split, n in N.items():
        for i in range(n):
            expected |= {f"ade/images/{ADE[split]}/{i:06d}.jpg", f"ade/annotations/{ADE[split]}/{i:06d}.png",
                         f"coco/{COCO_SPLIT[split]}/{i:06d}.jpg"}
    assert names == expected
    assert (out / "ade" / "classes.txt").read_text().splitlines() == CLASSES
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "shapes-dense" and manifest["samples"] == sum(N.values())
    assert {s: manifest["splits"][s]["images"] for s in N} == N
    assert str(out) not in (out / "manifest.json").read_text()


def test_annotation_maps_fit_their_images(out):
    """Each PNG is mode L and the size of its RGB JPEG; labels are 0..7, 0 exactly on the 2-px frame,
    and every shape label appears somewhere in the split."""
    seen = set()
    for split, n in N.items():
        for i in range(n):
            im = Image.open(out / "ade" / "images" / ADE[split] / f"{i:06d}.jpg")
            lab_im = Image.open(out / "ade" / "annotations" / ADE[split] / f"{i:06d}.png")
            assert (im.format, im.mode, lab_im.mode) == ("JPEG", "RGB", "L")
            assert lab_im.size == im.size == (64, 64)
            lab = np.asarray(lab_im)
            frame = np.ones_like(lab, dtype=bool)
            frame[2:-2, 2:-2] = False
            assert (lab[frame] == 0).all() and (interior(lab) >= 1).all() and lab.max() <= 7
            seen |= set(np.unique(lab).tolist())
    assert seen == set(range(8))


def test_coco_images_are_the_ade_bytes(out):
    """coco/train2017 and coco/val2017 hold byte for byte the ADE JPEGs of the same index."""
    for split, n in N.items():
        for i in range(n):
            assert ((out / "coco" / COCO_SPLIT[split] / f"{i:06d}.jpg").read_bytes()
                    == (out / "ade" / "images" / ADE[split] / f"{i:06d}.jpg").read_bytes())


def test_copies_when_hard_links_fail(tmp_path, monkeypatch):
    """Where os.link fails (another file system, no support), the COCO JPEGs are written as copies,
    and the output is the same bytes as with links."""
    prepare_shapes_dense(tmp_path / "linked", train=3, val=2)

    def no_link(src, dst):
        raise OSError("hard links not supported")

    monkeypatch.setattr(sd.os, "link", no_link)
    prepare_shapes_dense(tmp_path / "copied", train=3, val=2)
    assert all_bytes(tmp_path / "copied") == all_bytes(tmp_path / "linked")
    assert (tmp_path / "copied" / "coco" / "val2017" / "000001.jpg").stat().st_nlink == 1


def test_coco_masks_are_the_ade_pixels(out, cocos):
    """Read with pycocotools: each annotation's RLE decodes to a mask whose area and extent are its
    `area` and `bbox`, on pixels the ADE map labels with its kind; non-crowd masks are disjoint; and
    outside the frame, label k+2 is exactly the union of the kind-k masks, except for the slivers
    (fewer than 8 visible pixels each) that the manifest counts as unannotated."""
    manifest = json.loads((out / "manifest.json").read_text())
    kind_of = {c["id"]: SHAPES.index(c["name"]) for c in manifest["detection"]["categories"]}
    for split, n in N.items():
        coco, unexplained = cocos[split], 0
        for i in range(n):
            lab = labels(out, split, i)
            info = coco.loadImgs(1000 + i)[0]
            assert (info["file_name"], info["width"], info["height"]) == (f"{i:06d}.jpg", 64, 64)
            union = np.zeros((len(SHAPES), 64, 64), dtype=bool)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=[1000 + i], iscrowd=None)):
                m = coco_mask.decode(ann["segmentation"]).astype(bool)
                assert m.shape == (64, 64) and ann["area"] == m.sum() >= sd.MIN_AREA
                ys, xs = np.nonzero(m)
                assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                k = kind_of[ann["category_id"]]
                assert (interior(lab)[interior(m)] == k + 2).all()
                if not ann["iscrowd"]:
                    assert not union.any(0)[m].any()  # disjoint
                    union[k] |= m
            for k in range(len(SHAPES)):
                is_k = interior(lab) == k + 2
                assert not (interior(union[k]) & ~is_k).any()
                unexplained += int((is_k & ~interior(union[k])).sum())
        slivers = manifest["splits"][split]["unannotated_slivers"]
        assert slivers > 0 and unexplained <= (sd.MIN_AREA - 1) * slivers


def test_image_zero_is_empty_and_shapes_overlap(out, cocos):
    """Image 0 of each split has no annotation and only background; elsewhere some instances'
    boxes overlap (occlusion happens) and every non-empty image has at least one annotation."""
    overlaps = 0
    for split, n in N.items():
        coco = cocos[split]
        assert coco.getAnnIds(imgIds=[1000], iscrowd=None) == []
        assert (interior(labels(out, split, 0)) == 1).all()
        for i in range(1, n):
            boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[1000 + i], iscrowd=False))]
            assert boxes
            overlaps += sum(max(a[0], b[0]) < min(a[0] + a[2], b[0] + b[2]) and
                            max(a[1], b[1]) < min(a[1] + a[3], b[1] + b[3])
                            for j, a in enumerate(boxes) for b in boxes[j + 1:])
    assert overlaps > 0


def test_one_crowd_region_on_the_first_busy_train_image(out, cocos):
    """Train has exactly one iscrowd=1 annotation, on the first image with >= 2 annotations, and it
    repeats one of that image's instances; val has none."""
    coco = cocos["train"]
    crowd = coco.loadAnns(coco.getAnnIds(iscrowd=True))
    crowd = [a for a in crowd if a["iscrowd"]]
    assert len(crowd) == 1
    first_busy = next(1000 + i for i in range(N["train"])
                      if len(coco.getAnnIds(imgIds=[1000 + i], iscrowd=False)) >= 2)
    assert crowd[0]["image_id"] == first_busy
    same = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[first_busy], iscrowd=False))
            if (a["segmentation"], a["bbox"], a["category_id"]) ==
            (crowd[0]["segmentation"], crowd[0]["bbox"], crowd[0]["category_id"])]
    assert len(same) == 1
    assert not any(a["iscrowd"] for a in cocos["val"].dataset["annotations"])


def test_ids_are_not_contiguous(cocos):
    """Category ids are 3k+5 named by SHAPES[k], image ids 1000+index: neither starts at 0 or 1."""
    for coco in cocos.values():
        cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
        assert [(c["id"], c["name"]) for c in cats] == [(3 * k + 5, s) for k, s in enumerate(SHAPES)]
    assert sorted(cocos["val"].getImgIds()) == [1000 + i for i in range(N["val"])]
    ann_ids = [a["id"] for a in cocos["train"].dataset["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)


def test_deterministic_and_rerun_leaves_nothing_stale(out, tmp_path):
    """The same options give identical bytes in another folder; a re-run into a previous output
    with fewer images leaves none of the old ones; another seed gives other images."""
    again = tmp_path / "again"
    prepare_shapes_dense(again, image_size=64, train=N["train"], val=N["val"], seed=SEED)
    assert all_bytes(again) == all_bytes(out)
    prepare_shapes_dense(again, train=3, val=2, seed=SEED)
    assert sorted(p.name for p in (again / "coco" / "train2017").iterdir()) == ["000000.jpg", "000001.jpg",
                                                                                "000002.jpg"]
    small = all_bytes(again)
    assert all(small[k] == v for k, v in all_bytes(out).items() if k.endswith("/000001.png"))
    prepare_shapes_dense(tmp_path / "seed1", train=3, val=2, seed=SEED + 1)
    assert all_bytes(tmp_path / "seed1")["ade/images/training/000001.jpg"] != small["ade/images/training/000001.jpg"]


def test_cli(tmp_path, capsys):
    """`rils data prepare shapes-dense --out DIR --train 4 --val 2` exits 0, writes both layouts and
    prints the two eval commands with DIR filled in."""
    out = tmp_path / "sd"
    assert main(["data", "prepare", "shapes-dense", "--out", str(out), "--train", "4", "--val", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"rils eval segment --checkpoint CKPT --dataset {out / 'ade'}" in printed
    assert f"rils eval detect --checkpoint CKPT --dataset {out / 'coco'}" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"] == {"image_size": 64, "train": 4, "val": 2, "seed": 0}
    assert len(list((out / "coco" / "val2017").glob("*.jpg"))) == 2


@pytest.mark.parametrize("args, words", [
    (["--train", "0"], "--train must be"),
    (["--image-size", "8"], "--image-size must be"),
    (["--limit", "3"], "--limit does not apply to shapes-dense"),
])
def test_cli_refuses_bad_options_in_one_line(tmp_path, capsys, args, words):
    """Bad or foreign options exit 2 with one `rils: error:` line naming the option."""
    assert main(["data", "prepare", "shapes-dense", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rils: error:") and words in err


def test_refuses_a_foreign_non_empty_out(tmp_path, capsys):
    """A non-empty --out that is no previous shapes-dense output is refused (exit 2, one line) and
    left as it was; an empty one is used."""
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["data", "prepare", "shapes-dense", "--out", str(tmp_path), "--train", "2", "--val", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and str(tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    (tmp_path / "empty").mkdir()
    assert main(["data", "prepare", "shapes-dense", "--out", str(tmp_path / "empty"), "--train", "2",
                 "--val", "1"]) == 0
