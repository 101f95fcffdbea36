"""The embedded demo corpus: deterministic, held out, and faithful to its labels."""
import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rils.data import demo
from rils.data.demo import COLORS, SHAPES, DemoShapes, segmentation_classes, zeroshot_templates

# What the colour words mean, independent of the renderer's palette: the colour
# of a rendered shape must be nearest to the anchor of its name.
ANCHORS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255),
           "yellow": (255, 255, 0), "purple": (128, 0, 128), "orange": (255, 140, 0)}


def digest(sample) -> str:
    return hashlib.sha256(sample["image"].tobytes()).hexdigest()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text))


@pytest.fixture(scope="module")
def val():
    ds = DemoShapes("val", num_samples=300)
    return ds, [ds[i] for i in range(len(ds))]


def test_item_format_and_sizes():
    assert len(DemoShapes("train")) == 20000 and len(DemoShapes("val")) == 1000
    assert len(SHAPES) >= 5 and len(COLORS) >= 6
    for size in (32, 64, 224):
        s = DemoShapes("val", num_samples=3, image_size=size)[2]
        assert isinstance(s["image"], Image.Image) and s["image"].mode == "RGB"
        assert s["image"].size == (size, size)
        assert s["seg"].dtype == np.uint8 and s["seg"].shape == (size, size)
        assert s["seg"].max() <= len(SHAPES)
        assert 0 <= s["shape"] < len(SHAPES) and 0 <= s["color"] < len(COLORS)
    with pytest.raises(IndexError):
        DemoShapes("val", num_samples=3)[3]


def test_deterministic_across_instances_and_seeds():
    for size in (32, 64):
        a, b = DemoShapes("train", 50, size, seed=3), DemoShapes("train", 50, size, seed=3)
        for i in (0, 7, 49):
            x, y = a[i], b[i]
            assert digest(x) == digest(y)
            assert np.array_equal(x["seg"], y["seg"])
            assert (x["caption"], x["captions"], x["shape"], x["color"]) == \
                   (y["caption"], y["captions"], y["shape"], y["color"])
    other = DemoShapes("train", 50, 64, seed=4)
    assert sum(digest(other[i]) == digest(a[i]) for i in range(10)) == 0
    # A sample does not depend on the dataset length.
    assert digest(DemoShapes("train", 5, 64, seed=3)[2]) == digest(DemoShapes("train", 50, 64, seed=3)[2])


def test_deterministic_across_processes():
    # A fresh interpreter with another hash seed must render the same bytes. It
    # loads demo.py by path, skipping the heavier `rils` package import.
    def fingerprint(ds):
        return hashlib.sha256(b"".join(ds[i]["image"].tobytes() + ds[i]["caption"].encode()
                                       for i in range(len(ds)))).hexdigest()

    code = ("import hashlib, importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('demo', {demo.__file__!r})\n"
            "demo = sys.modules['demo'] = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(demo)\n"
            "ds = demo.DemoShapes('val', 20)\n"
            "print(hashlib.sha256(b''.join(ds[i]['image'].tobytes() + ds[i]['caption'].encode()"
            " for i in range(20))).hexdigest())\n")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.strip()
    assert there == fingerprint(DemoShapes("val", 20))


def test_train_and_val_are_disjoint(val):
    _, items = val
    train = DemoShapes("train", num_samples=300)
    train_hashes = {digest(train[i]) for i in range(len(train))}
    val_hashes = {digest(s) for s in items}
    assert len(train_hashes) == 300 and len(val_hashes) == 300  # no repeats within a split
    assert not train_hashes & val_hashes


def test_captions_are_faithful(val):
    _, items = val
    for s in items:
        assert len(s["captions"]) == 5 and len(set(s["captions"])) == 5
        assert s["caption"] in s["captions"]
        present = {SHAPES[k - 1] for k in np.unique(s["seg"]) if k}
        for c in s["captions"]:
            w = words(c)
            assert SHAPES[s["shape"]] in w and COLORS[s["color"]] in w, c
            assert w & set(SHAPES) <= present, c  # no shape that is not in the image
            if len(present) == 1:  # one shape: exactly its kind and colour
                assert w & set(SHAPES) == {SHAPES[s["shape"]]}, c
                assert w & set(COLORS) == {COLORS[s["color"]]}, c
    # The wording varies across the corpus, not only the nouns.
    assert len({c.split()[0] for s in items for c in s["captions"]}) >= 5


def test_seg_agrees_with_dominant_label(val):
    _, items = val
    agree = 0
    for s in items:
        counts = np.bincount(s["seg"].ravel(), minlength=len(SHAPES) + 1)
        counts[0] = 0
        agree += int(counts.argmax()) == 1 + s["shape"]
        side = s["seg"].shape[0]
        assert 0.35**2 * 0.3 < counts[1 + s["shape"]] / side**2 < 0.6**2  # dominant is big
    assert agree >= 0.98 * len(items)


def test_pixels_show_the_named_colour_on_a_light_background(val):
    _, items = val
    names = list(ANCHORS)
    anchors = np.array([ANCHORS[n] for n in names], dtype=float)
    for s in items[:100]:
        img = np.asarray(s["image"]).astype(int)
        seg = s["seg"]
        colour = np.median(img[seg == 1 + s["shape"]], axis=0)
        assert names[np.linalg.norm(anchors - colour, axis=1).argmin()] == COLORS[s["color"]]
        # Background well inside background areas (away from antialiased edges) is light and
        # unsaturated, so it never looks like any shape colour.
        inner_bg = (seg == 0)
        inner_bg[1:-1, 1:-1] &= (seg[:-2, 1:-1] == 0) & (seg[2:, 1:-1] == 0) \
            & (seg[1:-1, :-2] == 0) & (seg[1:-1, 2:] == 0)
        assert img[inner_bg].min() >= 160
        assert colour.min() <= 100


def test_labels_match_items(val):
    ds, items = val
    assert ds.labels("shape") == [s["shape"] for s in items]
    assert ds.labels("color") == [s["color"] for s in items]
    assert DemoShapes.classnames("shape") == list(SHAPES)
    assert DemoShapes.classnames("color") == list(COLORS)


def test_segmentation_masks(val):
    ds, items = val
    assert segmentation_classes("shape") == ["background", *SHAPES]
    assert segmentation_classes("color") == ["background", *COLORS]
    for i, s in enumerate(items[:20]):
        image, kinds = ds.image_and_mask(i)                       # the sample's own image and seg
        assert image.tobytes() == s["image"].tobytes() and np.array_equal(kinds, s["seg"])
        colors = ds.segmentation(i, "color")
        assert colors.dtype == np.uint8 and np.array_equal(colors > 0, kinds > 0)   # same regions
        dominant = kinds == s["shape"] + 1
        assert dominant.any() and (colors[dominant] == s["color"] + 1).all()
        for k in np.unique(kinds[kinds > 0]):                      # one colour per shape kind
            assert len(np.unique(colors[kinds == k])) == 1


@pytest.mark.parametrize("split", ["train", "val"])
def test_classes_are_balanced(split):
    ds = DemoShapes(split)
    for task, names in (("shape", SHAPES), ("color", COLORS)):
        counts = np.bincount(ds.labels(task), minlength=len(names))
        expected = len(ds) / len(names)
        assert counts.min() > 0.75 * expected and counts.max() < 1.25 * expected, (task, counts)


def test_zeroshot_templates():
    for task in ("shape", "color"):
        templates = zeroshot_templates(task)
        assert len(templates) >= 3
        for t in templates:
            assert t.count("{}") == 1
            assert DemoShapes.classnames(task)[0] in t.format(DemoShapes.classnames(task)[0])


@pytest.mark.parametrize("call", [
    lambda: DemoShapes("test"),
    lambda: DemoShapes("train", num_samples=0),
    lambda: DemoShapes("train", image_size=4),
    lambda: DemoShapes("train", seed=-1),
    lambda: DemoShapes("val", 10).labels("size"),
    lambda: DemoShapes.classnames("size"),
    lambda: DemoShapes("val", 10).segmentation(0, "size"),
    lambda: segmentation_classes("size"),
    lambda: zeroshot_templates("size"),
])
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError) as err:
        call()
    assert "\n" not in str(err.value)


def test_one_color_and_colorless_captions_change_only_what_they_say():
    base = DemoShapes("train", num_samples=40)
    one = DemoShapes("train", num_samples=40, one_color=True)
    plain = DemoShapes("train", num_samples=40, colorless_captions=1.0)
    for i in range(40):
        b, o, p = base[i], one[i], plain[i]
        assert (o["shape"], o["color"], o["seg"].tolist()) == (b["shape"], b["color"], b["seg"].tolist())
        words = set(o["caption"].replace(",", " ").split())
        assert words & set(COLORS) <= {COLORS[o["color"]]}          # one colour named, the dominant's
        assert not set(p["caption"].replace(",", " ").split()) & set(COLORS)
        assert SHAPES[p["shape"]] in p["caption"]
        assert not re.search(r"\ban [^aeiou]|\ba [aeiou]", p["caption"])   # articles still agree
    assert base[0]["image"].tobytes() == plain[0]["image"].tobytes()
