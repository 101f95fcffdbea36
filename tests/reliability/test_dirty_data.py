"""Dirty data at volume. 1,000 samples, 10% broken in ten ways: training runs to the end,
every skipped sample is counted by reason, and per epoch samples trained on + samples skipped =
samples in the shards. Awkward but valid samples (CMYK, 16-bit, a PNG named .jpg, a 10,000-character
caption, ...) are trained on, not skipped. A property test throws random bytes and captions at the
decode-and-tokenise path: a sample or SkipSample, never anything else."""
import json
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from rils.data.loader import make_loader
from rils.data.samples import SampleMaker, SkipSample, decode_image
from rils.data.sources import count_shard_samples, expand_shards
from rils.data.transforms import train_transform
from rils.model.text import get_tokenizer
from rils.train.config import load_config
from rils.train.engine import train

from .dirty_shards import ODD_GOOD, TOTAL, encode, expected_skips, kind_of, make_sample, n_good, png_bomb, \
    write_dirty_shards
from .helpers import TINY, records

CONTEXT = 16


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_dirty_shards(tmp_path_factory.mktemp("dirty"))


@pytest.fixture(scope="module")
def maker():
    return SampleMaker(train_transform(32), get_tokenizer(CONTEXT))


def test_one_pass_of_the_stream_accounts_for_every_sample(shards, maker):
    urls = expand_shards(shards)
    assert count_shard_samples(urls) == TOTAL
    batches = make_loader("shards", urls, maker, seed=0, epoch=0, rank=0, world=1, batch_size=30, workers=0,
                          shuffle_buffer=100)
    skipped, trained = Counter(), 0
    for _ in range(n_good() // 30):                  # exactly the good samples of one pass
        batch = next(batches)
        skipped.update(batch["skipped"])
        trained += batch["image"].shape[0]
        assert torch.isfinite(batch["image"]).all()
    assert trained == n_good() == 900
    assert skipped == expected_skips()               # none of the odd-but-good kinds among the skips
    assert trained + sum(skipped.values()) == TOTAL


@pytest.mark.parametrize("kind", ODD_GOOD)
def test_awkward_but_valid_samples_are_trained_on(kind, maker):
    i = next(i for i in range(TOTAL) if kind_of(i) == kind)
    raw = make_sample(i, np.random.default_rng(0))
    image = next(raw[k] for k in ("jpg", "png", "webp") if k in raw)
    caption = next(raw[k] for k in ("txt", "json") if k in raw)
    out = maker(image, caption, seed=1)
    assert out["image"].shape == (3, 32, 32) and torch.isfinite(out["image"]).all()
    assert out["text"].shape == (CONTEXT,)
    if kind == "long_caption":        # cut to the context: start token, 14 words' tokens, end token
        assert len(caption) == 10_000 and (out["text"] != 0).all()


def test_sixteen_bit_is_scaled_not_clipped():
    grey = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    img = decode_image(encode(Image.fromarray(grey), "PNG"))
    assert img.mode == "RGB"
    got = np.asarray(img)[..., 0].astype(int)
    assert np.abs(got - np.rint(grey / 257)).max() <= 1          # PIL's convert would give ~all 255


@pytest.mark.parametrize("data, reason", [
    (b"", "empty_image"), (png_bomb(), "decompression_bomb"), (png_bomb(9000, 9000), "decompression_bomb"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "bad_image"),  # never handed to Ghostscript
    (encode(Image.new("RGB", (3, 50)), "PNG"), "too_small"), (encode(Image.new("RGB", (4, 4)), "PNG"), None),
])
def test_image_skip_reasons(data, reason):
    if reason is None:
        assert decode_image(data).size == (4, 4)
    else:
        with pytest.raises(SkipSample) as info:
            decode_image(data)
        assert info.value.reason == reason


def test_training_runs_and_each_epoch_adds_up(shards, tmp_path):
    """1 rank, 1 worker, num_samples = the good samples, batch 30 divides it: one epoch = one pass.
    (MAE: the cheapest method; the data path, captions included, is the same for every method.)"""
    cfg = load_config("demo", [*TINY, "method=mae", "data.source=shards", f"data.path={shards}", f"data.num_samples={n_good()}",
                               "data.workers=1", "data.shuffle_buffer=100", "train.batch_size=30",
                               "train.max_steps=0", "train.epochs=2", "train.log_every=7", f"output_dir={tmp_path}"])
    train(cfg)
    recs = {r["step"]: r for r in records(tmp_path)}
    assert max(recs) == 60                                   # 2 epochs of 30 steps, to the end
    for end in (30, 60):                                     # the last step of each epoch is always logged
        r = recs[end]
        assert r["epoch_samples"] == n_good()
        assert r["epoch_skipped_by_reason"] == dict(expected_skips())
        assert r["epoch_samples"] + r["epoch_skipped"] == TOTAL
    assert recs[60]["skipped"] == 2 * sum(expected_skips().values())
    assert recs[35]["epoch_samples"] == 5 * 30              # the epoch counters start again
    assert all(np.isfinite(r["loss"]) for r in recs.values())


# ---------------------------------------------------------------------------------- property test

def _valid_image_bytes(draw):
    fmt = draw(st.sampled_from(["JPEG", "PNG", "GIF", "BMP", "WEBP"]))
    mode = draw(st.sampled_from(["RGB", "L", "P", "RGBA", "CMYK", "I;16", "1", "LA"]))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    base = Image.new("RGB", (w, h), tuple(draw(st.lists(st.integers(0, 255), min_size=3, max_size=3))))
    try:
        img = base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((h, w), 40000, np.uint16))
        return encode(img, fmt)
    except (OSError, ValueError, KeyError):   # a mode the format cannot hold
        return encode(base, fmt)


@st.composite
def image_payloads(draw):
    kind = draw(st.sampled_from(["random", "valid", "mutated", "truncated"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    data = bytearray(_valid_image_bytes(draw))
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncated":
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


bad_captions = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.text(alphabet=st.characters(codec=None), max_size=50),
    st.builds(lambda t: json.dumps({"caption": t}), st.text(max_size=50)),
    st.builds(lambda t: '{"caption": "' + t + '"}', st.text(max_size=30)),   # often broken JSON
    st.builds(lambda n: "{" * n, st.integers(1, 100_000)),                  # nesting bomb
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=5), st.integers(1000, 5000)),
    st.none(), st.integers(),
)
good_captions = st.one_of(
    st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=80),
    st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=40).map(str.encode),
    st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=20).map(lambda t: json.dumps({"caption": t})),
)
# mostly good captions, so that most examples reach the image decoder (the caption is checked first)
captions = st.integers(0, 9).flatmap(lambda n: good_captions if n < 7 else bad_captions)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(image=image_payloads(), caption=captions)
@example(image=png_bomb(), caption="ok")
@example(image=b"\xff\xd8\xff", caption='{"caption": "\\ud800 lone surrogate"}')
@example(image=b"x", caption="{" * 100_000)
@example(image=b"x", caption="a" * 100_000)
def test_maker_returns_a_sample_or_skips(maker, image, caption):
    try:
        out = maker(image, caption, seed=3)
    except SkipSample as skip:
        event(f"skip: {skip.reason}")
        assert skip.reason in {"empty_image", "bad_image", "decompression_bomb", "too_small", "bad_caption",
                               "empty_caption"}
        return
    event("sample")
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
    assert torch.isfinite(out["image"]).all()
    assert out["text"].shape == (CONTEXT,) and out["text"].dtype == torch.int64
