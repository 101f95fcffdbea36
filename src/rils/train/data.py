"""Build the training data of a config: the source, the per-sample maker, the epoch length."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data import sources
from ..data.loader import check_readable, make_loader
from ..data.samples import SampleMaker
from ..data.shards import listed_sizes
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
    sizes: dict = field(default_factory=dict)   # shards: sample counts the shards' folder lists
    caption_keys: list | None = None             # data.unique_captions: each sample's caption

    def micro_batches_per_epoch(self, batch_size: int, world: int) -> int:
        return self.num_samples // (batch_size * world)


def unique_group(cfg, world: int) -> int:
    """The rows that `data.unique_captions` keeps free of duplicate captions: one accumulated global batch."""
    return cfg.train.batch_size * cfg.train.accum_steps * world


def build_train_data(cfg, world: int = 1) -> TrainData:
    preset = get_preset(cfg.model.preset)
    method = METHODS[cfg.method]
    maker = SampleMaker(train_transform(preset.image_size, cfg.data.min_crop_scale),
                        get_tokenizer(preset.context_length),
                        simclr_view_transform(preset.image_size) if method.needs_views else None)
    d = cfg.data
    if d.source == "shards":
        urls = sources.expand_shards(d.path)
        # Counted at start-up only for the epoch length; the counts also spare a resume from counting.
        sizes = listed_sizes(urls) if d.num_samples else sources.shard_sizes(urls)
        n = d.num_samples or sum(sizes.values())
        return TrainData("shards", urls, maker, n, sizes)
    if d.source == "demo":
        src = sources.DemoSource(d.num_samples, preset.image_size, seed=0, one_color=d.demo_one_color,
                                 colorless_captions=d.demo_colorless_captions, max_shapes=d.demo_max_shapes)
    elif d.source == "csv":
        src = sources.csv_source(d.path, d.csv_image_key, d.csv_caption_key, d.csv_separator)
    else:
        src = sources.folder_source(d.path)
    check_readable(src, maker)   # data that yields nothing is bad input (exit 2), said before the first step
    n = min(d.num_samples, len(src)) if d.num_samples else len(src)
    keys = None
    if d.unique_captions:
        keys = [" ".join((c or "").split()) for _, c in src.pairs]   # identical up to white space
        group = unique_group(cfg, world)
        distinct = len(set(keys[:n]))
        if distinct < group:
            raise ValueError(f"data.unique_captions: {d.path} has {distinct} distinct captions, fewer than "
                             f"an accumulated global batch of {group}")
    return TrainData("map", src, maker, n, caption_keys=keys)


def epoch_batches(data: TrainData, cfg, *, epoch: int, rank: int, world: int, start: int, pin_memory: bool,
                  position: dict | None = None, track: dict | None = None):
    """This rank's batches of `epoch` from micro-batch `start`; `position` (shards) is where a
    checkpoint recorded this rank's stream, so the used samples are not read again; `track` receives
    the positions of batches read again when there is none (see rils.data.loader.make_loader)."""
    return make_loader(data.kind, data.source, data.maker, seed=cfg.seed, epoch=epoch, rank=rank, world=world,
                       batch_size=cfg.train.batch_size, workers=cfg.data.workers, start_step=start,
                       resampled=cfg.data.resampled, shuffle_buffer=cfg.data.shuffle_buffer,
                       pin_memory=pin_memory, num_samples=data.num_samples, position=position,
                       sizes=data.sizes, track=track, unique_keys=data.caption_keys,
                       unique_group=unique_group(cfg, world))
