"""Batches for the training loop: sharded across ranks and workers, deterministic, resumable.

Map-style sources (demo, csv, folder): epoch e visits a permutation seeded by (seed, e); global
batch t is perm[t*G:(t+1)*G] and rank r takes rows [r*b, (r+1)*b) of it, so R ranks x b see exactly
the samples of 1 rank x R*b, and a resume skips batches without reading them. A sample that cannot be
read is skipped, counted, and its slot filled by the next readable sample, so batches stay full
(all ranks must gather equal shapes).

Shards: each rank reads its shards (split by rank, then by worker) with a seeded shuffle buffer;
broken samples are dropped and counted; the stream wraps into another pass when it runs dry, and the
loop takes a fixed number of batches per epoch. A resume re-reads and discards the batches already used.
The skip reasons travel with the next good sample of the same pass (`_skipped`); those met after a
pass's last good sample travel with that last one (it is held back until the pass ends), so a batch
stream that covers one pass carries every skip of that pass. A pass that yields no good sample at all
ends this worker's stream (instead of re-reading unreadable shards forever).
"""
from __future__ import annotations

import itertools
import random
from collections import Counter

import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from torch.utils.data import default_collate

from .samples import SampleMaker, SkipSample, sample_seed

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
CAPTION_KEYS = ("txt", "json")
MAX_FALLBACK = 1000


def collate(samples: list[dict]) -> dict:
    skipped = Counter()
    for s in samples:
        skipped.update(s.pop("_skipped", ()))
    batch = default_collate(samples)
    batch["skipped"] = dict(skipped)
    return batch


class MapStyleTrain(Dataset):
    def __init__(self, source, maker: SampleMaker, seed: int, epoch: int):
        self.source, self.maker, self.seed, self.epoch = source, maker, seed, epoch

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for attempt in range(MAX_FALLBACK):
            i = (index + attempt) % len(self.source)
            try:
                image, caption = self.source.raw(i)
                sample = self.maker(image, caption, sample_seed(self.seed, self.epoch, i))
                sample["_skipped"] = skipped
                return sample
            except SkipSample as skip:
                skipped.append(skip.reason)
        raise RuntimeError(f"{MAX_FALLBACK} consecutive unreadable samples from index {index}; is the data path right?")


class RankBatches(Sampler):
    """This rank's rows of every global batch of one epoch, from `start_step` on."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int, world: int, batch_size: int, start_step: int = 0):
        self.n, self.seed, self.epoch = n, seed, epoch
        self.rank, self.world, self.b, self.start = rank, world, batch_size, start_step

    def steps(self) -> int:
        return self.n // (self.b * self.world)

    def __len__(self):
        return max(0, self.steps() - self.start)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        G = self.b * self.world
        for t in range(self.start, self.steps()):
            lo = t * G + self.rank * self.b
            yield perm[lo:lo + self.b]


class ShardStream(IterableDataset):
    def __init__(self, urls, maker: SampleMaker, seed: int, epoch: int, rank: int, world: int,
                 resampled: bool = False, shuffle_buffer: int = 1000):
        self.urls, self.maker, self.seed, self.epoch = urls, maker, seed, epoch
        self.rank, self.world, self.resampled, self.buffer = rank, world, resampled, shuffle_buffer

    def _shards(self, pass_: int, worker: int, workers: int):
        if self.resampled:
            rng = random.Random(sample_seed(self.seed, self.epoch, f"resample:{pass_}:{self.rank}:{worker}"))
            while True:
                yield {"url": rng.choice(self.urls)}
        urls = list(self.urls)
        random.Random(sample_seed(self.seed, self.epoch, f"shards:{pass_}")).shuffle(urls)
        for u in urls[self.rank::self.world][worker::workers]:
            yield {"url": u}

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        skipped = []

        def on_error(exc):  # tar-level damage: count and go on
            skipped.append("bad_shard")
            return True

        for pass_ in itertools.count():
            shards = list(itertools.islice(self._shards(pass_, worker, workers), 1)) if not self.resampled else None
            if shards is not None and not shards:
                return  # this worker has no shard of this rank; the others carry the epoch
            samples = wds.tarfile_to_samples(handler=on_error)(self._shards(pass_, worker, workers))
            shuffle_seed = sample_seed(self.seed, self.epoch, f"buffer:{pass_}:{self.rank}:{worker}")
            samples = wds.detshuffle(self.buffer, min(100, self.buffer), seed=shuffle_seed).run(samples)
            held = None  # the last good sample, yielded once the next one (or the pass's end) is known
            for raw in samples:
                try:
                    sample = self._make(raw)
                except SkipSample as skip:
                    skipped.append(skip.reason)
                    continue
                if held is not None:
                    yield held
                sample["_skipped"], skipped = skipped, []
                held = sample
            if held is None:
                return  # a whole pass without one readable sample: reading it again will not help
            held["_skipped"] = held["_skipped"] + skipped
            skipped = []
            yield held

    def _make(self, raw: dict) -> dict:
        image = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
        if image is None:
            raise SkipSample("no_image")
        caption = next((raw[k] for k in CAPTION_KEYS if k in raw), None)
        if caption is None:
            raise SkipSample("no_caption")
        key = f"{raw.get('__url__', '')}:{raw.get('__key__', '')}"
        return self.maker(image, caption, sample_seed(self.seed, self.epoch, key))


def make_loader(kind: str, source, maker: SampleMaker, *, seed: int, epoch: int, rank: int, world: int,
                batch_size: int, workers: int, start_step: int = 0, resampled: bool = False,
                shuffle_buffer: int = 1000, pin_memory: bool = False, num_samples: int | None = None):
    """An iterator over this rank's batches of `epoch`, starting at `start_step`."""
    common = dict(num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
                  persistent_workers=False, prefetch_factor=4 if workers else None)
    if kind == "shards":
        stream = ShardStream(source, maker, seed, epoch, rank, world, resampled, shuffle_buffer)
        loader = DataLoader(stream, batch_size=batch_size, drop_last=True, **common)
        it = iter(loader)
        for _ in range(start_step):  # replay what the interrupted run had used
            next(it)
        return it
    sampler = RankBatches(num_samples or len(source), seed, epoch, rank, world, batch_size, start_step)
    return iter(DataLoader(MapStyleTrain(source, maker, seed, epoch), batch_sampler=sampler, **common))
