"""Batches for the training loop: sharded across ranks and workers, deterministic, resumable.

Map-style sources (demo, csv, folder): epoch e visits a permutation seeded by (seed, e); global
batch t is perm[t*G:(t+1)*G] and rank r takes rows [r*b, (r+1)*b) of it, so R ranks x b see exactly
the samples of 1 rank x R*b, and a resume skips batches without reading them. A sample that cannot be
read is skipped, counted, and its slot filled by the next readable sample, so batches stay full
(all ranks must gather equal shapes).

Shards: each rank reads its shards (split by rank, then by worker) with a seeded shuffle buffer;
broken samples are dropped and counted; the stream wraps into another pass when it runs dry, and the
loop takes a fixed number of batches per epoch. A checkpoint records where each worker's stream stands
(`note_position`); a resume starts each worker there without decoding the samples already used (see
ShuffleBuffer and ShardStream), or, with no recorded position, re-reads and discards the used batches.
Shards that cannot be read are reported at once, and too many in a row raise DataFault.
The skip reasons travel with the next good sample of the same pass (`_skipped`); those met after a
pass's last good sample travel with that last one (it is held back until the pass ends), so a batch
stream that covers one pass carries every skip of that pass. A pass that yields no good sample at all
ends this worker's stream (instead of re-reading unreadable shards forever).
"""
from __future__ import annotations

import itertools
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from torch.utils.data import default_collate

from .samples import SampleMaker, SkipSample, describe_skips, sample_seed
from .shards import ShardError, count_samples, read_shard

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
CAPTION_KEYS = ("txt", "json")
MAX_FALLBACK = 1000


def collate(samples: list[dict]) -> dict:
    skipped, position = Counter(), None
    for s in samples:
        skipped.update(s.pop("_skipped", ()))
        position = s.pop("_position", position)
    batch = default_collate(samples)
    batch["skipped"] = dict(skipped)
    if position is not None:   # shards: where this worker's stream stands after the batch's last sample
        batch["position"] = position
    return batch


class DataFault(RuntimeError):
    """The data cannot go on: too many unreadable samples in a row to fill a slot, or too many shards
    in a row that cannot be read. Raised in a DataLoader worker, it reaches the main process re-made by
    torch with the worker's traceback in its message; `reason()` is the one line that matters."""

    def reason(self) -> str:
        last = (str(self).strip().splitlines() or [""])[-1]
        return last.split(f"{type(self).__name__}: ", 1)[-1]


def check_readable(source, maker: SampleMaker, limit: int = MAX_FALLBACK) -> None:
    """Read samples from the start until one is readable. ValueError naming the reasons when none of
    the first `limit` is: a folder without caption files or a CSV whose paths are all wrong is bad
    input, said at once, not a fill-in search that gives up after 1000 tries mid-run."""
    failed = Counter()
    n = min(limit, len(source))
    for i in range(n):
        try:
            maker(*source.raw(i), seed=0)
            return
        except SkipSample as skip:
            failed[skip.reason] += 1
    of = f"{n}" if n == len(source) else f"the first {n} of {len(source)}"
    raise ValueError(f"data: 0 of {of} samples readable: {describe_skips(failed)}")


class MapStyleTrain(Dataset):
    def __init__(self, source, maker: SampleMaker, seed: int, epoch: int):
        self.source, self.maker, self.seed, self.epoch = source, maker, seed, epoch

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        """The sample at `index`, or, if it cannot be read, the next readable one. Only this slot's own
        sample is counted as skipped: those passed over on the way are counted when their own slot
        comes, so an unreadable sample is counted once per epoch, not once per slot that walks past it."""
        failed, own = Counter(), []
        tries = min(MAX_FALLBACK, len(self.source))
        for attempt in range(tries):
            i = (index + attempt) % len(self.source)
            try:
                image, caption = self.source.raw(i)
                sample = self.maker(image, caption, sample_seed(self.seed, self.epoch, i))
                sample["_skipped"] = own
                return sample
            except SkipSample as skip:
                failed[skip.reason] += 1
                if attempt == 0:
                    own = [skip.reason]
        raise DataFault(f"data: {tries} samples in a row from index {index} are unreadable "
                             f"({describe_skips(failed)}); is data.path right?")


def unique_key_order(perm: list[int], keys, group: int, length: int) -> list[int]:
    """`perm` rearranged so that every run of `group` consecutive indices (aligned to 0) holds distinct
    keys: an index whose key is already in the group being filled waits, in order, for the next one.
    When the indices run out before `length`, the last groups are topped up from the start of `perm`
    (samples seen again in that epoch; the waiting ones left at the end are not seen), so an epoch keeps
    its length. Deterministic in `perm`."""
    out, waiting, pos, top = [], [], 0, 0
    while len(out) < length:
        batch, seen, rest = [], set(), []
        for i in waiting:
            if len(batch) < group and keys[i] not in seen:
                batch.append(i)
                seen.add(keys[i])
            else:
                rest.append(i)
        waiting = rest
        while len(batch) < group and pos < len(perm):
            i = perm[pos]
            pos += 1
            if keys[i] in seen:
                waiting.append(i)
            else:
                batch.append(i)
                seen.add(keys[i])
        for _ in range(len(perm)):   # the epoch's end: top up from its start, where the last top-up stopped
            if len(batch) == group:
                break
            i = perm[top % len(perm)]
            top += 1
            if keys[i] not in seen:
                batch.append(i)
                seen.add(keys[i])
        out.extend(batch)
    return out[:length]


class RankBatches(Sampler):
    """This rank's rows of every global batch of one epoch, from `start_step` on. With `keys`
    (`data.unique_captions`), no two samples of one group of `group` consecutive global rows (an
    accumulated global batch) share a key."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int, world: int, batch_size: int, start_step: int = 0,
                 keys=None, group: int = 0):
        self.n, self.seed, self.epoch = n, seed, epoch
        self.rank, self.world, self.b, self.start = rank, world, batch_size, start_step
        self.keys, self.group = keys, group or batch_size * world

    def steps(self) -> int:
        return self.n // (self.b * self.world)

    def __len__(self):
        return max(0, self.steps() - self.start)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        G = self.b * self.world
        if self.keys is not None:
            perm = unique_key_order(perm, self.keys, self.group, self.steps() * G)
        for t in range(self.start, self.steps()):
            lo = t * G + self.rank * self.b
            yield perm[lo:lo + self.b]


class ShuffleBuffer:
    """webdataset's shuffle buffer (outputs start once it holds `initial` items; while it holds fewer
    than `size`, two items come in per item out; each output is a uniform pick), with its state in
    the open. The draws depend on the count of items only, never on the items, so the same buffer run
    over positions instead of samples tells a resumed stream which samples the interrupted one had
    used and which sat in its buffer, without reading any of them."""

    def __init__(self, size: int, initial: int, seed: int):
        self.size, self.initial = max(1, size), max(1, min(initial, size))
        self.rng = random.Random(seed)
        self.buf: list = []

    def run(self, items) -> Iterator:
        items = iter(items)
        for item in items:
            self.buf.append(item)
            if len(self.buf) < self.size:
                more = next(items, _END)
                if more is not _END:
                    self.buf.append(more)
            if len(self.buf) >= self.initial:
                yield self._pick()
        while self.buf:
            yield self._pick()

    def _pick(self):
        k = self.rng.randint(0, len(self.buf) - 1)
        item, self.buf[k] = self.buf[k], self.buf[-1]
        self.buf.pop()
        return item


_END = object()
# A worker gives up once this many different shards in a row could not be read (or all of its shards, if
# it has fewer): a wrong path, a dead server or a lost mount, not a blip. Between failures it waits
# SHARD_RETRY_DELAY seconds, doubled per failure in a row, at most 8 s, to ride out a short outage.
MAX_SHARD_FAILURES = 10
SHARD_RETRY_DELAY = 0.25


class _ShardReader:
    """One worker's shard reading: reports the first failure of each shard on the console at once,
    counts a failed shard as a `bad_shard` skip, and raises DataFault after too many in a row."""

    def __init__(self, skipped: list, limit: int, prefix: str):
        self.skipped, self.limit, self.prefix = skipped, limit, prefix
        self.reported = set()
        self.streak = set()   # shards that failed since one was last read; a pass boundary does not reset it

    def samples(self, shards, start: tuple[int, int] = (0, 0)) -> Iterator[dict]:
        """The raw samples of `shards` (an iterable of URLs) in order, from (shard number, sample) on."""
        k0, i0 = start
        for k, url in enumerate(shards):
            if k < k0:
                continue
            first = i0 if k == k0 else 0
            got = False
            try:
                for _, raw in read_shard(url, wanted=(lambda i, f=first: i >= f) if first else None):
                    got = True
                    yield raw
                self.streak.clear()
            except ShardError as exc:
                self.failed(exc, got)

    def fetch(self, url: str, wanted: set) -> dict:
        """{sample index: raw sample} for the `wanted` samples of one shard."""
        try:
            return dict(read_shard(url, wanted=wanted.__contains__, until=max(wanted)))
        except ShardError as exc:
            self.failed(exc, got=True)
            return {}

    def failed(self, exc: ShardError, got: bool) -> None:
        self.skipped.append("bad_shard")
        if exc.url not in self.reported:
            self.reported.add(exc.url)
            print(f"[rils] {self.prefix}data: cannot read shard {exc.url}: {exc.reason}", file=sys.stderr, flush=True)
        if got:     # it was reachable: a damaged shard, not a lost source
            self.streak.clear()
            return
        self.streak.add(exc.url)
        if len(self.streak) >= self.limit:
            raise DataFault(f"data: {len(self.streak)} shards in a row could not be read, the last {exc.url}: "
                            f"{exc.reason}; is data.path right?")
        time.sleep(min(SHARD_RETRY_DELAY * 2 ** (len(self.streak) - 1), 8.0))


class ShardStream(IterableDataset):
    """One rank's samples from webdataset shards. Each DataLoader worker plays a role (normally its
    id): the role picks the shards and seeds the shuffle. After a resume, roles are rotated so that
    worker 0 plays the role whose batch comes next, and each role starts where the interrupted run's
    consumer stood (`position`: {"last_role": r, "roles": {role: [pass, outputs used]}}). Every sample
    carries `_position` = (role, pass, outputs of that pass accounted for once it is used)."""

    def __init__(self, urls, maker: SampleMaker, seed: int, epoch: int, rank: int, world: int,
                 resampled: bool = False, shuffle_buffer: int = 1000, position: dict | None = None,
                 sizes: dict | None = None):
        self.urls, self.maker, self.seed, self.epoch = urls, maker, seed, epoch
        self.rank, self.world, self.resampled, self.buffer = rank, world, resampled, shuffle_buffer
        self.position, self.sizes = position, sizes or {}

    def _rank_shards(self, role: int, roles: int) -> int:
        return len(self.urls[self.rank::self.world][role::roles])

    def _role(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if not self.position:
            return worker, workers
        # the role after the last one used, skipping roles without shards (the DataLoader skips their workers)
        alive = [r for r in range(workers) if self.resampled or self._rank_shards(r, workers)]
        last = int(self.position.get("last_role", -1))
        first = next((r for r in alive if r > last), alive[0] if alive else 0)
        return (worker + first) % workers, workers

    def _shards(self, pass_: int, role: int, roles: int):
        if self.resampled:
            rng = random.Random(sample_seed(self.seed, self.epoch, f"resample:{pass_}:{self.rank}:{role}"))
            return (rng.choice(self.urls) for _ in itertools.count())
        urls = list(self.urls)
        random.Random(sample_seed(self.seed, self.epoch, f"shards:{pass_}")).shuffle(urls)
        return urls[self.rank::self.world][role::roles]

    def __iter__(self):
        role, roles = self._role()
        start_pass, start_out = (self.position or {}).get("roles", {}).get(role, (0, 0))
        skipped = []
        limit = MAX_SHARD_FAILURES if self.resampled else min(MAX_SHARD_FAILURES, self._rank_shards(role, roles))
        reader = _ShardReader(skipped, max(1, limit), f"rank {self.rank}: " if self.world > 1 else "")
        for pass_ in itertools.count(start_pass):
            if not self.resampled and not self._rank_shards(role, roles):
                return  # this role has no shard of this rank; the others carry the epoch
            skip = start_out if pass_ == start_pass else 0
            held = None  # the last good sample, yielded once the next one (or the pass's end) is known
            for j, raw in self._outputs(pass_, role, roles, skip, reader):
                try:
                    sample = self._make(raw)
                except SkipSample as s:
                    skipped.append(s.reason)
                    continue
                if held is not None:
                    yield held
                sample["_skipped"], skipped = skipped, []
                sample["_position"] = (role, pass_, j + 1)
                held = sample
            if held is None:
                if skip:
                    continue   # resumed near a pass's end: its last skips go with the next pass
                return  # a whole pass without one readable sample: reading it again will not help
            held["_skipped"] = held["_skipped"] + skipped
            held["_position"] = (role, pass_ + 1, 0)   # it closes the pass: its trailing skips ride along
            skipped = []
            yield held

    def _outputs(self, pass_: int, role: int, roles: int, skip: int, reader: _ShardReader):
        """(output number, raw sample) of one pass, from output `skip` on."""
        seed = sample_seed(self.seed, self.epoch, f"buffer:{pass_}:{self.rank}:{role}")
        buffer = ShuffleBuffer(self.buffer, min(100, self.buffer), seed)
        if not skip:
            return enumerate(buffer.run(reader.samples(self._shards(pass_, role, roles))))
        # Exact resume: the same draws over (shard, sample) positions give what the interrupted run had
        # used and what sat in its buffer; only those buffered samples and the rest are read.
        drawn = []       # shard URLs in the order the pass takes them (resampled: an endless draw)
        positions = _Positions(self._shards(pass_, role, roles), drawn, self._count)
        replay = ShuffleBuffer(self.buffer, min(100, self.buffer), seed)
        outputs = replay.run(positions)
        for _ in itertools.islice(outputs, skip - 1):
            pass
        if next(outputs, _END) is _END:
            return iter(())             # the pass was used up
        wanted: dict[int, set] = {}
        for k, i in replay.buf:
            wanted.setdefault(k, set()).add(i)
        fetched = {(k, i): raw for k, idx in wanted.items() for i, raw in reader.fetch(drawn[k], idx).items()}
        buffer.buf = [fetched[p] for p in replay.buf if p in fetched]
        buffer.rng.setstate(replay.rng.getstate())
        rest = reader.samples(self._shards(pass_, role, roles), start=positions.next)
        return enumerate(buffer.run(rest), start=skip)

    def _count(self, url: str) -> int:
        return self.sizes[url] if url in self.sizes else count_samples(url)

    def _make(self, raw: dict) -> dict:
        image = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
        if image is None:
            raise SkipSample("no_image")
        caption = next((raw[k] for k in CAPTION_KEYS if k in raw), None)
        if caption is None:
            raise SkipSample("no_caption")
        key = f"{raw.get('__url__', '')}:{raw.get('__key__', '')}"
        return self.maker(image, caption, sample_seed(self.seed, self.epoch, key))


class _Positions:
    """(shard number, sample) for each raw sample of a pass, from the shards' sample counts alone;
    `next` is the position of the first one not handed out yet."""

    def __init__(self, shards, drawn: list, count):
        self.shards, self.drawn, self.count = shards, drawn, count
        self.next = (0, 0)

    def __iter__(self):
        for k, url in enumerate(self.shards):
            self.drawn.append(url)
            n = self.count(url)
            for i in range(n):
                self.next = (k, i + 1) if i + 1 < n else (k + 1, 0)
                yield k, i
            if not n:
                self.next = (k + 1, 0)


def note_position(track: dict, batch: dict) -> None:
    """Take a shard batch's `position` out of it into `track` ({"last_role": r, "roles": {r: (pass,
    outputs)}}), what a checkpoint records so that a resume starts each worker where it stood."""
    position = batch.pop("position", None)
    if position is not None:
        role, pass_, outputs = position
        track.setdefault("roles", {})[int(role)] = (int(pass_), int(outputs))
        track["last_role"] = int(role)


def _leave_stop_signals_to_the_main_process(_worker_id: int) -> None:
    """A DataLoader worker ignores Ctrl-C and any SIGTERM but its parent's: a Ctrl-C or a scheduler's
    SIGTERM reaches the whole process group, and a worker it killed would make torch raise in the main
    process in the middle of the checkpoint it is saving. The parent's SIGTERM (how the DataLoader ends
    a worker that does not stop by itself) still ends it, so nothing is left waiting at exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait_for_the_parents_sigterm():
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != parent:
            pass
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=wait_for_the_parents_sigterm, daemon=True).start()


def make_loader(kind: str, source, maker: SampleMaker, *, seed: int, epoch: int, rank: int, world: int,
                batch_size: int, workers: int, start_step: int = 0, resampled: bool = False,
                shuffle_buffer: int = 1000, pin_memory: bool = False, num_samples: int | None = None,
                position: dict | None = None, sizes: dict | None = None, track: dict | None = None,
                unique_keys=None, unique_group: int = 0):
    """An iterator over this rank's batches of `epoch`, starting at `start_step`. Shards: with
    `position` (what a checkpoint recorded) each worker starts where the interrupted run stood,
    without reading the samples it had used; without it the used batches are read again and dropped
    (their positions go into `track`, as `note_position` does for the batches the caller takes)."""
    common = dict(num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
                  persistent_workers=False, prefetch_factor=4 if workers else None,
                  worker_init_fn=_leave_stop_signals_to_the_main_process if workers else None)
    if kind == "shards":
        position = position if start_step else None
        stream = ShardStream(source, maker, seed, epoch, rank, world, resampled, shuffle_buffer, position, sizes)
        loader = DataLoader(stream, batch_size=batch_size, drop_last=True, **common)
        it = iter(loader)
        for _ in range(0 if position else start_step):  # replay what the interrupted run had used
            note_position(track if track is not None else {}, next(it))
        return it
    sampler = RankBatches(num_samples or len(source), seed, epoch, rank, world, batch_size, start_step,
                          unique_keys, unique_group)
    return iter(DataLoader(MapStyleTrain(source, maker, seed, epoch), batch_sampler=sampler, **common))
