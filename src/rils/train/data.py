"""Build the training data of a config: the source, the per-sample maker, the epoch length."""
from __future__ import annotations

from dataclasses import dataclass

from ..data import sources
from ..data.loader import make_loader
from ..data.samples import SampleMaker
from ..data.transforms import simclr_view_transform, train_transform
from ..methods import METHODS
from ..model.text import get_tokenizer
from ..presets import get_preset


@dataclass
class TrainData:
    kind: str            # "map" or "shards"
    source: object
    maker: SampleMaker
    num_samples: int

    def micro_batches_per_epoch(self, batch_size: int, world: int) -> int:
        return self.num_samples // (batch_size * world)


def build_train_data(cfg) -> TrainData:
    preset = get_preset(cfg.model.preset)
    method = METHODS[cfg.method]
    maker = SampleMaker(train_transform(preset.image_size, cfg.data.min_crop_scale),
                        get_tokenizer(preset.context_length),
                        simclr_view_transform(preset.image_size) if method.needs_views else None)
    d = cfg.data
    if d.source == "shards":
        urls = sources.expand_shards(d.path)
        n = d.num_samples or sources.count_shard_samples(urls)
        return TrainData("shards", urls, maker, n)
    if d.source == "demo":
        src = sources.DemoSource(d.num_samples, preset.image_size, seed=0)
    elif d.source == "csv":
        src = sources.csv_source(d.path, d.csv_image_key, d.csv_caption_key, d.csv_separator)
    else:
        src = sources.folder_source(d.path)
    n = min(d.num_samples, len(src)) if d.num_samples else len(src)
    return TrainData("map", src, maker, n)


def epoch_batches(data: TrainData, cfg, *, epoch: int, rank: int, world: int, start: int, pin_memory: bool):
    return make_loader(data.kind, data.source, data.maker, seed=cfg.seed, epoch=epoch, rank=rank, world=world,
                       batch_size=cfg.train.batch_size, workers=cfg.data.workers, start_step=start,
                       resampled=cfg.data.resampled, shuffle_buffer=cfg.data.shuffle_buffer,
                       pin_memory=pin_memory, num_samples=data.num_samples)
