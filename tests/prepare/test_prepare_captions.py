"""Caption cleaning on hand-written openclipart metadata."""
from __future__ import annotations

import pytest

from rils.data.prepare import fashion_mnist as fm
from rils.data.prepare.common import Skip
from rils.data.prepare.openclipart import (ClipMeta, TEMPLATES, category_name, clean_description,
                                           clean_keywords, clean_title, make_caption, name_from_stem,
                                           parse_svg_metadata)

from .prepare_fixtures import svg_text


@pytest.mark.parametrize("title", [
    "Part of the Flat Icon Collection (Wed Aug 25 23:29:46 2004)", "Lemon SVG theme", "gramastar",
    "Etiquette Icons", "Various Cliparts", "blueberry - iconset", "Clipart by Nicu Buculei - antenna",
    "SVG Gradient Collection by Alan Horkan, 2004.", "R16 sibmission", "Openclipart", "Unnamed",
    "ralf@ark.in-berlin.de", "help-books-aj.svg", "HASH(0x8699fd4)", "http://example.org/x", "  ", "12",
    None])
def test_boilerplate_titles_are_dropped(title):
    assert clean_title(title)[0] is None


@pytest.mark.parametrize("title, expected", [
    ("Chemistry Flask", "Chemistry Flask"), ("Hot_Dog", "Hot Dog"), (" sierra_leone", "sierra leone"),
    ("Clipart by Steve Hall - United States - Texas", "United States - Texas"),
    ("01_nomoon_openclipart", "nomoon"), ("Grampa&amp;#39;n Gramma", "Grampa'n Gramma"),
    ("National flag of Taiwan in SVG format", "National flag of Taiwan")])
def test_titles_are_cleaned(title, expected):
    assert clean_title(title) == (expected, "ok")


def test_file_name_names_a_collection_member():
    assert name_from_stem("chemistry_flask_matthew__02", "Matthew Wardrop") == "chemistry flask"
    assert name_from_stem("siringa_architetto_franc_01", "architetto francesco rollandin") == "siringa"
    assert name_from_stem("aiga_elevator1") == "elevator"
    assert name_from_stem("gnome-fs-trash-empty") == "trash empty"
    assert name_from_stem("star_79pt30step") == "79-pointed star"
    assert name_from_stem("70a016") is None
    assert name_from_stem("ralf_ark.in-berlin.de_ra_01", junk_title="ralf@ark.in-berlin.de") is None


def test_descriptions_and_keywords():
    assert clean_description("A chemistry flask with the &amp;quot;required&amp;quot; bubbles. More text.") \
        == 'A chemistry flask with the "required" bubbles'
    assert clean_description("jean.victor.balin@gmail.com") is None
    assert clean_description("EPS converted from  http://aiga.org") is None
    assert clean_description("Crawfish", name="Crawfish") is None
    assert clean_description("x" * 200) is None
    kws = clean_keywords(["hash", None, "bird", "Birds", "hash(0x8a07724)", "architetto francesco rollandin",
                          "north_america", "icons", "space astronomy planet saturn", "eagle", "11"],
                         creator="Architetto Francesco Rollandin", name="Eagle")
    assert kws == ["bird", "north america", "space", "astronomy", "planet", "saturn"]


def test_caption_uses_metadata_and_is_deterministic():
    meta = parse_svg_metadata(svg_text("Construction Hammer", "Metal head hammer with rubber handle.",
                                       ["hammer", "carpentry", "tools", "hash"]).encode())
    assert meta.title == "Construction Hammer" and meta.creator == "Some Author"
    assert meta.keywords == ["hammer", "carpentry", "tools", "hash"]
    captions = {}
    for i in range(60):
        item_id = f"tools/construction_hammer_{i:02d}"
        cap, info = make_caption(item_id, meta, "construction_hammer", "tools")
        assert (cap, info) == make_caption(item_id, meta, "construction_hammer", "tools")
        assert "Construction Hammer" in cap or cap == "Metal head hammer with rubber handle"
        assert "hash" not in cap and "Public Domain" not in cap and "Some Author" not in cap
        captions[cap] = info["template"]
    assert len(set(captions.values())) == len(TEMPLATES)  # every template turns up
    assert any("carpentry" in c for c in captions) and any("rubber handle" in c for c in captions)


def test_caption_fallbacks_and_skip():
    lemon = ClipMeta(title="Lemon SVG theme", keywords=["icon", "hash", "computer", "theme"])
    cap, info = make_caption("computer/icons/cdrom_unmount", lemon, "cdrom_unmount", "computer/icons")
    assert info["name"] == "cdrom unmount" and info["name_source"] == "file_name" and "Lemon" not in cap
    cap, info = make_caption("computer/icons/70a016", ClipMeta(title="gold-theme"), "70a016", "computer/icons")
    assert info["name_source"] == "category" and info["name"] == "computer"
    cap, info = make_caption("shapes/fc24", ClipMeta(title="Clipart by Nicu Buculei - fc23",
                                                      keywords=["flowchart", "shape"]), "fc24", "shapes/flowchart")
    assert info["name_source"] == "keywords" and "flowchart" in cap
    cap, info = make_caption("recreation/cards/simple_s_8", ClipMeta(title="card", keywords=["card", "simple"]),
                             "simple_s_8", "recreation/cards")
    assert info["name"] == "simple card"
    with pytest.raises(Skip, match="no_usable_text"):
        make_caption("unsorted/ec2.py_fearzip_01", ClipMeta(title="ec2.py", keywords=["unsorted"],
                                                            creator="FearZip"), "ec2.py_fearzip_01", "unsorted")
    assert category_name("animals/birds") == "birds"
    assert category_name("computer/icons/lemon-theme") == "computer"
    assert category_name("unsorted") is None


def test_fashion_mnist_captions():
    seen = set()
    for i in range(300):
        label = i % 10
        cap, t = fm.caption_for(f"train/{i:05d}", label)
        assert cap == fm.caption_for(f"train/{i:05d}", label)[0]
        name = fm.CLASS_NAMES[label]
        assert any(word in cap for word in name.replace("/", " ").split()), (cap, name)
        seen.add(t)
    assert seen == set(range(len(fm.TEMPLATES)))
    assert fm.CLASS_NAMES == ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                              "sneaker", "bag", "ankle boot")
    assert fm.caption_for("x", 9)[0].count("ankle boot") == 1
