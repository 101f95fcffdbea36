"""Reading webdataset shards (tar files in the img2dataset layout) one sample at a time.

A sample is a run of consecutive members that share a key (the name up to the first dot of its last
part), as webdataset groups them: `{"__key__": "dir/000123", "__url__": URL, "jpg": b"...", "txt": b"..."}`
(suffixes lower-cased; directories, names without a dot and `__meta__` files left out).

Our own small tar reader instead of webdataset's pipeline, for two reasons:
- Failures are visible and quick. An http(s) shard is opened with urllib and a timeout (webdataset's
  curl retries 30 times, silently, for minutes); any failure is a `ShardError` naming the shard and
  the reason, raised after the samples read before it.
- Exact resume without decoding. `read_shard(url, wanted)` reads only the data of the samples
  asked for: a local shard skips the others by seeking past them (headers only, 512 bytes each),
  a stream reads past them without decoding anything.
"""
from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

SHARD_TIMEOUT = 60.0      # seconds: an http(s) connect or read that takes longer is a failed shard
_BLOCK = 512
_META = re.compile(r"__[^/]*__($|/)")


class ShardError(OSError):
    """A shard that could not be opened or read to its end; `reason` is one line."""

    def __init__(self, url: str, reason: str, opened: bool):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.opened = url, reason, opened


def local_path(url: str) -> str | None:
    """The file of a local shard (a path or a file: URL), None for anything remote."""
    if url.startswith("file:"):
        return re.sub(r"^file://?", "", url)       # as webdataset's gopen reads it
    if "://" in url or url.startswith("pipe:"):
        return None
    return url


def _reason(exc: BaseException) -> str:
    """'Connection refused', 'No such file or directory', 'HTTP Error 404: Not Found', ..."""
    inner = getattr(exc, "reason", None)      # urllib's URLError wraps the socket error
    if isinstance(inner, BaseException):
        exc = inner
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def open_shard(url: str):
    """A binary file object: a local file, an http(s) response (timeout SHARD_TIMEOUT), or whatever
    webdataset's gopen makes of other URLs (`pipe:`, `s3:` through a pipe, ...)."""
    path = local_path(url)
    if path is not None:
        return open(path, "rb")
    if url.startswith(("http://", "https://")):
        return urllib.request.urlopen(url, timeout=SHARD_TIMEOUT)
    from webdataset import gopen
    return gopen.gopen(url, "rb")


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:   # GNU base-256, for sizes of 8 GiB and more
        return int.from_bytes(field, "big") & ~(0x80 << 8 * (len(field) - 1))
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a pax extended header ("%d path=...\\n" records)."""
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
        pos += length
    return None


class _Tar:
    """The regular members of a tar stream, in order: `members()` yields (name, size); call `read()`
    before the next one to get the data, else it is skipped (by seeking, where the file can)."""

    def __init__(self, fh, seekable: bool):
        self.fh, self.seekable = fh, seekable
        self.end = os.fstat(fh.fileno()).st_size if seekable else None
        self.pending = 0           # bytes of the current member's data (and padding) not yet consumed
        self.size = 0

    def _read_exact(self, n: int) -> bytes:
        data = self.fh.read(n)
        while len(data) < n:
            more = self.fh.read(n - len(data))
            if not more:
                raise EOFError("unexpected end of data (truncated shard)")
            data += more
        return data

    def _skip(self, n: int) -> None:
        if n <= 0:
            return
        if self.seekable:
            self.fh.seek(n, os.SEEK_CUR)
        else:
            while n > 0:
                chunk = self.fh.read(min(n, 1 << 20))
                if not chunk:
                    raise EOFError("unexpected end of data (truncated shard)")
                n -= len(chunk)

    def read(self) -> bytes:
        data = self._read_exact(self.size)
        self.pending -= self.size
        return data

    def members(self) -> Iterator[tuple[str, int]]:
        long_name = None
        first = True
        while True:
            self._skip(self.pending)
            self.pending = 0
            header = self.fh.read(_BLOCK)
            if len(header) < _BLOCK:
                if not header:
                    return                  # the end (a tar cut at a member boundary reads as complete)
                header += self._read_exact(_BLOCK - len(header))
            if header == b"\0" * _BLOCK:
                return                      # the end-of-archive block
            if first and _octal(header[148:156]) != sum(header[:148]) + 256 + sum(header[156:]):
                raise ValueError("not a tar file (header checksum)")
            first = False
            size, kind = _octal(header[124:136]), header[156:157]
            self.size, self.pending = size, (size + _BLOCK - 1) // _BLOCK * _BLOCK
            if self.end is not None and self.fh.tell() + size > self.end:
                raise EOFError("unexpected end of data (truncated shard)")
            if kind in (b"L", b"x"):        # GNU long name / pax header: it names the next member
                data = self.read()
                long_name = (data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") if kind == b"L"
                             else _pax_path(data) or long_name)
                continue
            name = header[:100].split(b"\0", 1)[0]
            if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
                name = header[345:500].split(b"\0", 1)[0] + b"/" + name
            name, long_name = long_name or name.decode("utf-8", "surrogateescape"), None
            if kind in (b"0", b"\0", b"7"):  # regular files
                yield name, size


def _key_and_suffix(name: str) -> tuple[str, str] | None:
    """webdataset's base_plus_ext: ('dir/000123', 'jpg') for 'dir/000123.jpg'; None without a dot."""
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    if not dot or not stem:
        return None
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def read_shard(url: str, wanted: Callable[[int], bool] | None = None,
               until: int | None = None) -> Iterator[tuple[int, dict]]:
    """(index, sample) for the samples of one shard, in order; with `wanted`, only those whose index
    it accepts, without reading the data of the others; with `until`, none after that index (the
    rest of the shard is not read). A failure raises ShardError after the samples read before it (the
    sample being read when it happened is dropped)."""
    try:
        fh = open_shard(url)
    except Exception as exc:
        raise ShardError(url, _reason(exc), opened=False) from None
    with fh:
        tar = _Tar(fh, seekable=local_path(url) is not None)
        index, current = -1, None
        try:
            for name, _ in tar.members():
                if _META.match(name) or (ks := _key_and_suffix(name)) is None:
                    continue
                key, suffix = ks
                if current is None or key != current["__key__"]:
                    if current is not None and (wanted is None or wanted(index)):
                        yield index, current
                    if until is not None and index >= until:
                        return
                    index, current = index + 1, {"__key__": key, "__url__": url}
                if suffix not in current and (wanted is None or wanted(index)):
                    current[suffix] = tar.read()
            if current is not None and (wanted is None or wanted(index)):
                yield index, current
        except Exception as exc:
            raise ShardError(url, _reason(exc), opened=True) from None


def count_samples(url: str) -> int:
    """How many samples `read_shard` yields for this shard, from its headers alone (a local shard's
    data is never read): 0 for one that cannot be opened, those before the failure for a damaged one."""
    try:
        fh = open_shard(url)
    except Exception:
        return 0
    with fh:
        tar, keys, last = _Tar(fh, seekable=local_path(url) is not None), 0, None
        try:
            for name, _ in tar.members():
                if _META.match(name) or (ks := _key_and_suffix(name)) is None:
                    continue
                if ks[0] != last:
                    keys, last = keys + 1, ks[0]
        except Exception:
            return max(keys - 1, 0)   # read_shard drops the sample it was reading
    return keys


def listed_sizes(urls: list[str]) -> dict[str, int]:
    """Sample counts that the shards' folder states, without opening any tar: webdataset's / open_clip's
    `sizes.json` ({"00000.tar": 10000, ...}) or img2dataset's `00000_stats.json` ("successes")."""
    sizes, tables = {}, {}
    for u in urls:
        path = local_path(u)
        if path is None:
            continue
        p = Path(path)
        if p.parent not in tables:
            try:
                tables[p.parent] = json.loads((p.parent / "sizes.json").read_text())
            except (OSError, ValueError):
                tables[p.parent] = {}
        n = tables[p.parent].get(p.name) if isinstance(tables[p.parent], dict) else None
        if n is None:
            try:
                n = json.loads(p.with_name(f"{p.stem}_stats.json").read_text()).get("successes")
            except (OSError, ValueError, AttributeError):
                n = None
        if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
            sizes[u] = n
    return sizes
