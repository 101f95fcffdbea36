"""`rils viz`: the semantic-map figure and the training curves."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import rils
from rils.cli import main as rils_main
from rils.data.demo import DemoShapes
from rils.viz import plot_curves, read_metrics, semantic_map


def test_semantic_map_panels_and_png(tiny_ckpt, tmp_path):
    model = rils.load_model(tiny_ckpt)
    image = DemoShapes("val", num_samples=2)[0]["image"]        # 64 px; the model sees 32 px
    texts = ["a red circle", "a blue square", "a light background"]
    out = tmp_path / "map.png"
    r = semantic_map(model, image, texts, out=out)
    assert len(r.panel_axes) == len(texts) + 2                  # image, one per text, argmax
    assert [ax.get_title() for ax in r.panel_axes[1:4]] == texts
    assert r.probs.shape == (3, 4, 4)
    assert torch.allclose(r.probs.sum(0), torch.ones(4, 4), atol=1e-5)
    assert r.image.shape == (32, 32, 3)
    with Image.open(out) as png:
        w, h = png.size
    assert w > h > 100                                          # one row of 5 panels
    legend = r.panel_axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == texts


def test_semantic_map_needs_two_texts(tiny_ckpt):
    with pytest.raises(ValueError, match="two texts"):
        semantic_map(rils.load_model(tiny_ckpt), Image.new("RGB", (32, 32)), ["one"])


def test_semantic_map_cli(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert rils_main(["viz", "semantic-map", "--checkpoint", str(tiny_ckpt), "--image", "demo-shapes:val:1",
                      "--texts", "a red circle", "a blue square", "--out", str(out), "--tau", "0.1"]) == 0
    assert out.is_file() and "of patches" in capsys.readouterr().out
    assert rils_main(["viz", "semantic-map", "--checkpoint", str(tiny_ckpt), "--image",
                      str(tmp_path / "none.png"), "--texts", "a", "b", "--out", str(out)]) == 2


def _write_metrics(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 40, "lo')   # a cut line


def test_curves(tmp_path):
    rows = [{"step": s, "epoch": s / 100, "lr": 1e-4 * s, "loss": 4 - s / 10, "clip_loss": 3 - s / 10,
             "recon_loss": 1.0, "i2t_acc": s / 40, "matched_frac": s / 40, "skipped_by_reason": {}}
            for s in (10, 20, 30)]
    rows.append({**rows[-1], "loss": 0.5})                      # step 30 again (a resumed run)
    _write_metrics(tmp_path / "metrics.jsonl", rows)
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == [10, 20, 30] and recs[-1]["loss"] == 0.5
    out = tmp_path / "curves.png"
    fig = plot_curves(tmp_path, out)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert [l.get_label() for l in fig.axes[0].get_lines()] == ["loss", "clip_loss", "recon_loss"]
    assert out.is_file()
    with Image.open(out) as png:
        assert png.size[0] > 2 * png.size[1]


def test_curves_only_present_keys_and_cli(tmp_path, capsys):
    _write_metrics(tmp_path / "metrics.jsonl", [{"step": 1, "lr": 0.1}, {"step": 2, "lr": 0.2}])
    assert [ax.get_title() for ax in plot_curves(tmp_path).axes] == ["learning rate"]
    assert rils_main(["viz", "curves", str(tmp_path / "metrics.jsonl"), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()
    assert rils_main(["viz", "curves", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d.png")]) == 2


def test_legend_colours_follow_the_colour_words_of_the_texts():
    from matplotlib.colors import to_rgb

    from rils.viz import NAMED_COLORS, text_colors

    texts = ["a red circle", "an orange cross", "a light background", "a blue square", "a star"]
    colors = text_colors(texts)
    assert tuple(colors[0]) == to_rgb(NAMED_COLORS["red"]) and tuple(colors[3]) == to_rgb(NAMED_COLORS["blue"])
    assert tuple(colors[1]) == to_rgb(NAMED_COLORS["orange"])
    # the others: not the colour another text names (nor close to it), and not each other's
    for i in (2, 4):
        assert all(np.linalg.norm(colors[i] - colors[j]) >= 0.25 for j in range(len(texts)) if j != i)


def test_no_text_is_drawn_near_white_and_each_is_a_distinct_saturated_colour():
    """Every text's colour in a semantic map is saturated (or the colour it names, never near-white) and
    the texts' colours are far apart, so on a white-background image the argmax map never looks like the
    input."""
    import colorsys

    from rils.viz import text_colors

    for texts in (["white background", "a cat", "a dog"], ["background", "a circle", "a square", "a star"],
                  ["a white circle", "a red square", "a light background", "something"], [f"class {i}" for i in range(12)]):
        colors = text_colors(texts)
        assert all(min(c) < 0.75 for c in colors), texts   # not pale in every channel: visible on white
        unnamed = [c for t, c in zip(texts, colors) if "red" not in t]
        assert all(colorsys.rgb_to_hsv(*c)[1] >= 0.35 for c in unnamed), (texts, colors)   # saturated: no greys
        gaps = [np.linalg.norm(a - b) for i, a in enumerate(colors) for b in colors[i + 1:]]
        assert min(gaps) >= 0.25, (texts, colors)
    assert tuple(text_colors(["white background", "x"])[0]) != (244 / 255,) * 3


def test_semantic_map_grid_draws_each_image_beside_its_argmax(tiny_ckpt, tmp_path):
    from rils.eval.patchseg import BACKGROUND_PROMPTS, COLOR_SEG_TEMPLATES, class_prompts
    from rils.viz import semantic_map_grid

    classes = ["background", "red", "blue"]
    images = [DemoShapes("val", num_samples=3)[i]["image"] for i in range(3)]
    fig = semantic_map_grid(rils.load_model(tiny_ckpt), images, classes,
                            class_prompts(classes, COLOR_SEG_TEMPLATES, BACKGROUND_PROMPTS),
                            out=tmp_path / "grid.png")
    assert len(fig.axes) == 2 * len(images) and (tmp_path / "grid.png").stat().st_size > 0
