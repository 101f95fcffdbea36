"""Datasets: ImageFolder trees and CSVs made in tmp_path, Fashion-MNIST files, demo-shapes prompts."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval_helpers import make_image_folder
from rils.eval import aligned_labels, get_classnames, get_templates, load_dataset
from rils.eval.datasets import FASHION_MNIST_DIR


def test_image_folder_with_split_folders(tmp_path):
    make_image_folder(tmp_path / "train", classes=("cat", "dog", "eel"), per_class=2)
    make_image_folder(tmp_path / "test", classes=("cat", "eel"), per_class=1)
    train = load_dataset(str(tmp_path), "train")
    test = load_dataset(str(tmp_path), "test")
    assert train.classnames == ["cat", "dog", "eel"] and test.classnames == ["cat", "eel"]
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2] and len(test) == 2
    im = train.image(2)
    assert im.mode == "RGB" and im.size == (16, 16) and im.getpixel((0, 0))[0] >= 120  # a "dog"
    # The test split lacks "dog": its labels are re-indexed into the train classes.
    assert aligned_labels(test, train.classnames).tolist() == [0, 2]
    # "val" falls back to test/ (and the other way round) so protocols can always ask for "test".
    assert load_dataset(str(tmp_path), "val").cache_id == test.cache_id


def test_image_folder_missing_split_is_a_clear_error(tmp_path):
    make_image_folder(tmp_path / "train")
    with pytest.raises(FileNotFoundError, match="no.*'test'|none for 'test'"):
        load_dataset(str(tmp_path), "test")


def test_aligned_labels_rejects_unknown_classes(tmp_path):
    make_image_folder(tmp_path / "a", classes=("cat",))
    make_image_folder(tmp_path / "b", classes=("cow",))
    with pytest.raises(ValueError, match="cow"):
        aligned_labels(load_dataset(str(tmp_path / "b")), load_dataset(str(tmp_path / "a")).classnames)


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_csv_labels_relative_paths_and_renamed_columns(tmp_path):
    data = tmp_path / "data"
    for name, v in [("a.png", 10), ("b.png", 20), ("c.png", 30)]:
        _png(data / "img" / name, v)
    (data / "test.csv").write_text("img,cls\nimg/a.png,10\nimg/b.png,2\nimg/c.png,10\n")
    ds = load_dataset(str(data / "{split}.csv"), "test", image_key="img", label_key="cls")
    # Integer labels sort numerically: "2" before "10".
    assert ds.classnames == ["2", "10"] and ds.labels.tolist() == [1, 0, 1]
    assert ds.image(1).getpixel((0, 0)) == (20, 20, 20)  # resolved against the CSV's folder
    with pytest.raises(ValueError, match="no column 'label'.*--csv-label-key"):
        load_dataset(str(data / "test.csv"), "test", image_key="img")


def test_csv_captions_group_rows_by_image(tmp_path):
    _png(tmp_path / "x.png", 1)
    _png(tmp_path / "y.png", 2)
    (tmp_path / "caps.csv").write_text(
        "filepath,caption\nx.png,a red dog\ny.png,a blue cat\nx.png,\"a dog, red\"\n")
    ds = load_dataset(str(tmp_path / "caps.csv"), "test", kind="retrieval")
    assert len(ds) == 2 and ds.captions == [["a red dog", "a dog, red"], ["a blue cat"]]
    assert ds.image(0).getpixel((0, 0)) == (1, 1, 1)
    (tmp_path / "tabs.tsv").write_text("path\ttext\nx.png\tone\n")
    tsv = load_dataset(str(tmp_path / "tabs.tsv"), kind="retrieval", image_key="path", caption_key="text")
    assert tsv.captions == [["one"]]


def test_csv_missing_images_and_unknown_dataset(tmp_path):
    (tmp_path / "l.csv").write_text("filepath,label\nnope.png,a\n")
    with pytest.raises(FileNotFoundError, match="1 image file"):
        load_dataset(str(tmp_path / "l.csv"))
    with pytest.raises(FileNotFoundError, match="neither a known name"):
        load_dataset(str(tmp_path / "missing"))
    make_image_folder(tmp_path / "tree")
    with pytest.raises(ValueError, match="retrieval needs a CSV"):
        load_dataset(str(tmp_path / "tree"), kind="retrieval")


def test_cache_id_changes_when_an_image_changes(tmp_path):
    make_image_folder(tmp_path)
    before = load_dataset(str(tmp_path)).cache_id
    _png(tmp_path / "cat" / "0.png", 200)
    assert load_dataset(str(tmp_path)).cache_id != before


# ---------------------------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_missing_files_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.delenv("RILS_FASHION_MNIST", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", "test", fashion_mnist_root=str(tmp_path))
    msg = str(err.value)
    assert "dataset-fashion-mnist" in msg and "t10k-images-idx3-ubyte.gz" in msg and "\n" not in msg


def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_from_env(tmp_path, monkeypatch):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 251
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, 0x803)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([9, 0, 3]), 0x801)
    monkeypatch.setenv("RILS_FASHION_MNIST", str(tmp_path))
    ds = load_dataset("fashion-mnist", "train")
    assert len(ds) == 3 and ds.labels.tolist() == [9, 0, 3] and ds.classnames[9] == "ankle boot"
    im = ds.image(1)
    assert im.mode == "RGB" and im.size == (28, 28)
    assert all(np.array_equal(np.asarray(im)[..., c], images[1]) for c in range(3))
    with pytest.raises(ValueError, match="no captions"):
        load_dataset("fashion-mnist", "train", kind="retrieval")


@pytest.mark.skipif(not (Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_installed_test_split(monkeypatch):
    monkeypatch.delenv("RILS_FASHION_MNIST", raising=False)
    ds = load_dataset("fashion-mnist", "val")  # "val" is the held-out split: t10k
    assert len(ds) == 10000 and np.bincount(ds.labels).tolist() == [1000] * 10


# ------------------------------------------------------------------------------------ demo-shapes

@pytest.mark.parametrize("task,key", [("shape", "demo-shapes"), ("color", "demo-shapes-color")])
def test_demo_shapes_prompts_match_the_corpus(task, key):
    from rils.data.demo import DemoShapes, zeroshot_templates

    # Our JSON is CLIP_benchmark-style ({c}); the corpus's own templates use {}.
    assert get_classnames(key) == DemoShapes.classnames(task)
    assert get_templates(key) == [t.replace("{}", "{c}") for t in zeroshot_templates(task)]
    ds = load_dataset("demo-shapes", "test", task=task, num_samples=5, image_size=32)
    assert ds.split == "val" and ds.template_key == key and len(ds) == 5
    assert ds.labels.tolist() == DemoShapes("val", 5, 32).labels(task)
    assert ds.image(0).size == (32, 32)
    assert len(ds.captions) == 5 and all(len(c) == 5 for c in ds.captions)


def test_shipped_json_has_clip_benchmark_layout():
    from rils.eval.prompts import CLASSNAMES_FILE, TEMPLATES_FILE

    names, templates = json.loads(CLASSNAMES_FILE.read_text()), json.loads(TEMPLATES_FILE.read_text())
    assert {"fashion-mnist", "demo-shapes", "demo-shapes-color"} <= set(names)
    assert set(names) - set(templates) == {"caltech101_vtab"}   # as in CLIP_benchmark: it uses caltech101's
    assert len(names["fashion-mnist"]) == 10
    assert all(isinstance(v, list) and all("{c}" in t for t in v) for v in templates.values())
    with pytest.raises(ValueError, match="no shipped templates for 'nope'"):
        get_templates("nope")


def test_classnames_and_templates_from_an_entry_of_a_clip_benchmark_style_file(tmp_path):
    import json

    from rils.eval import get_classnames, get_templates

    f = tmp_path / "names.json"
    f.write_text(json.dumps({"cifar10": ["airplane", "automobile"], "pets": ["abyssinian", "beagle"]}))
    assert get_classnames(f"{f}:pets") == ["abyssinian", "beagle"]
    t = tmp_path / "templates.json"
    t.write_text(json.dumps({"cifar10": ["a photo of a {c}."]}))
    assert get_templates(str(t)) == ["a photo of a {c}."]          # the only entry
    with pytest.raises(ValueError, match=r"several entries.*names.json:KEY.*cifar10, pets"):
        get_classnames(str(f))


def test_shipped_lists_for_imagenet_and_the_common_zero_shot_sets():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    from rils.eval import get_classnames, get_templates
    from rils.eval.prompts import fill, imagenet_synsets

    assert get_classnames("imagenet1k") == list(IMAGENET_CLASSNAMES)      # CLIP's curated names
    assert [fill(t, "x") for t in get_templates("imagenet1k")] == [t("x") for t in OPENAI_IMAGENET_TEMPLATES]
    assert len(get_templates("imagenet1k-slip")) == 7 and len(imagenet_synsets()) == 1000
    sizes = {"cifar10": 10, "cifar100": 100, "stl10": 10, "food101": 101, "pets": 37, "flowers": 102,
             "dtd": 47, "eurosat": 10, "fgvc_aircraft": 100, "cars": 196, "sun397": 397, "mnist": 10}
    assert {k: len(get_classnames(k)) for k in sizes} == sizes
    assert all(get_templates(k) for k in sizes)
    assert get_classnames("cifar10")[:2] == ["airplane", "automobile"]


def test_a_folder_of_imagenet_synsets_is_read_as_imagenet(tmp_path):
    from rils.eval.datasets import image_folder
    from rils.eval.prompts import synset_classnames

    make_image_folder(tmp_path / "val", classes=("n01443537", "n01440764"), per_class=1)
    ds = image_folder(tmp_path / "val", "val")
    assert ds.template_key == "imagenet1k" and ds.classnames == ["n01440764", "n01443537"]
    assert synset_classnames(ds.classnames, get_classnames("imagenet1k")) == ["tench", "goldfish"]
    with pytest.raises(ValueError, match="1,000-entry class name list"):
        synset_classnames(ds.classnames, ["tench", "goldfish"])
    make_image_folder(tmp_path / "other", classes=("n01440764", "n99999999"), per_class=1)
    assert image_folder(tmp_path / "other", "val").template_key is None   # not an ImageNet id: plain folder
