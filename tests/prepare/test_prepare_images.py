"""Image shrinking: alpha onto white, aspect kept, never enlarged, strip-wise reduction exact."""
from __future__ import annotations

import numpy as np
from PIL import Image

from rils.data.prepare.common import shrink_to_rgb

from .prepare_fixtures import rgba_drawing


def test_transparent_black_becomes_white_without_dark_fringe():
    out = shrink_to_rgb(rgba_drawing((400, 200)), 50)
    assert out.mode == "RGB" and out.size == (50, 25)
    a = np.asarray(out).astype(int)
    assert (a[0, 0] == 255).all()
    # every pixel is a mix of red and white: no channel drops below what red/white allow
    assert (a[..., 0] >= 250).all() and (np.abs(a[..., 1] - a[..., 2]) <= 2).all()


def test_strips_match_one_pass_and_small_images_are_not_enlarged():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (157, 203, 4), dtype=np.uint8)
    im = Image.fromarray(arr, "RGBA")
    one = np.asarray(shrink_to_rgb(im, 20, strip_pixels=10**9)).astype(int)
    many = np.asarray(shrink_to_rgb(im, 20, strip_pixels=2000)).astype(int)  # strips of a few rows
    assert one.shape == many.shape and one.shape[1] == 20 and one.shape[0] in (15, 16)
    assert np.abs(one - many).max() <= 1
    small = shrink_to_rgb(Image.new("LA", (30, 10), (0, 0)), 128)
    assert small.size == (30, 10) and small.getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (8, 8), 3)
    assert shrink_to_rgb(pal, 128).size == (8, 8)
