"""Images/s of one data worker (`bench_data`, `rils bench --data`): demo rendering and JPEG decoding,
each through the training transform and tokeniser, to hold against the model's step rate."""
from __future__ import annotations

import time

import torch

from ..presets import get_preset
from .machine import _machine


def bench_data(preset: str = "vit_ti8_64", n: int = 512, method: str = "rils") -> dict:
    """Images/s of one data worker: demo rendering, and JPEG decode, each with the training
    transform and tokenisation, to hold against the model's step rate (x data.workers)."""
    import io

    from ..data.demo import DemoShapes
    from ..data.samples import SampleMaker
    from ..data.transforms import simclr_view_transform, train_transform
    from ..methods import METHODS
    from ..model.text import get_tokenizer

    p = get_preset(preset)
    views = METHODS[method].needs_views
    maker = SampleMaker(train_transform(p.image_size), get_tokenizer(p.context_length),
                        simclr_view_transform(p.image_size) if views else None)
    demo = DemoShapes("train", num_samples=n, image_size=p.image_size)
    raw = [demo[i] for i in range(n)]
    jpegs = []
    for item in raw:
        buf = io.BytesIO()
        item["image"].resize((2 * p.image_size, 2 * p.image_size)).save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    out = {"preset": preset, "method": method, "samples": n, "machine": _machine(torch.device("cpu"))}
    t = time.perf_counter()
    for i in range(n):
        item = demo[i]
        maker(item["image"], item["caption"], i)
    out["demo_render_transform_per_sec"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        maker(jpegs[i], raw[i]["caption"], i)
    out["jpeg_decode_transform_per_sec"] = n / (time.perf_counter() - t)
    return out
