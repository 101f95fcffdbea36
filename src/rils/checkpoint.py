"""Checkpoints: written atomically with a sha256 sidecar, read back only if the bytes match and
without unpickling code (`weights_only=True`).

On disk, next to every checkpoint `X.pt` lies `X.pt.sha256`, one line in `sha256sum` format
(`<64 hex digits>  X.pt`, so `sha256sum -c` works from the folder). The digest is computed while the
checkpoint is written, and the sidecar is written (atomically too) after the checkpoint is in place.
`load_checkpoint` compares the file with its sidecar before unpickling anything, so a truncated,
bit-flipped or half-copied file is refused with a message that says so. A checkpoint without a
sidecar (an older one, or one copied alone) still loads: torch's zip reader refuses a truncated file,
and `weights_only=True` refuses code in any case.
"""
from __future__ import annotations

import errno as _errno
import hashlib
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

FORMAT = "rils-checkpoint-v1"
SIDECAR_SUFFIX = ".sha256"
_CHUNK = 1 << 20


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, fh):
        self.fh, self.sha = fh, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self):
        self.fh.flush()


def default_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the umask (0644 under the usual 022), so a
    cluster group can read checkpoints and exports. mkstemp (and safetensors, which writes through
    one) makes them 0600, readable by their owner alone."""
    mask = os.umask(0o022)     # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


def _write_atomic(path: Path, write) -> None:
    """`write(fh)` into a temporary file in the same folder, fsync, rename over `path`.
    Any failure leaves `path` as it was and raises OSError naming `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), default_file_mode())
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); best effort where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> OSError:
    code = exc.errno or _errno.EIO
    reason = exc.strerror or os.strerror(code)
    err = OSError(code, f"could not write checkpoint {path}: {reason}")
    err.filename = str(path)
    return err


def write_sidecar(path: str | Path, digest: str, name: str | None = None) -> None:
    path = Path(path)
    line = f"{digest}  {name or path.name}\n".encode()
    _write_atomic(sidecar_path(path), lambda fh: fh.write(line))


def save_atomic(obj: dict, path: str | Path) -> str:
    """Write `obj` to `path` through a temporary file, fsync, rename, then its sha256 sidecar.
    A kill or a full disk mid-write leaves the previous file intact; an OSError names `path`.
    Returns the hex digest."""
    path = Path(path)
    digest = {}

    def write(fh):
        w = _HashingWriter(fh)
        torch.save(obj, w)
        digest["hex"] = w.sha.hexdigest()

    try:
        _write_atomic(path, write)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        write_sidecar(path, digest["hex"])
    except OSError as exc:
        # `path` is complete (fsynced before the rename); a sidecar of the file it replaced would
        # make it look corrupted, so drop that: it then loads unverified
        try:
            sidecar_path(path).unlink(missing_ok=True)
        except OSError:
            pass
        raise _write_error(path, exc) from exc
    return digest["hex"]


def link_checkpoint(target: str | Path, link: str | Path, digest: str | None = None) -> None:
    """`link` becomes a hard link of `target` (no second copy of the bytes), with its own sidecar.
    Replaced atomically: until the rename, `link` is the previous file."""
    target, link = Path(target), Path(link)
    tmp = link.with_name(f".{link.name}.link.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(target, tmp)
        os.replace(tmp, link)
        write_sidecar(link, digest or read_sidecar(target) or file_sha256(target))
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise _write_error(link, exc) from exc


def save_checkpoint(state: dict, ckpt_dir: str | Path, step: int, periodic: bool, keep: int = 0) -> Path:
    """The trainer's save: `step_NNNNNNNN.pt` (periodic) with `latest.pt` a hard link of it, or
    `latest.pt` alone. Periodic files beyond the newest `keep` are removed (0 = keep all).
    On failure nothing that was there before is changed, a half-made periodic file is removed, and
    the OSError names the file that could not be written."""
    ckpt_dir = Path(ckpt_dir)
    latest = ckpt_dir / "latest.pt"
    if not periodic:
        save_atomic(state, latest)
        return latest
    target = ckpt_dir / f"step_{step:08d}.pt"
    try:
        digest = save_atomic(state, target)
        link_checkpoint(target, latest, digest)
    except OSError:
        if not (latest.exists() and target.exists() and os.path.samefile(latest, target)):
            for p in (target, sidecar_path(target)):
                try:
                    p.unlink(missing_ok=True)
                except OSError:
                    pass
        raise
    if keep:
        for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep]:
            for p in (old, sidecar_path(old)):
                try:
                    p.unlink(missing_ok=True)
                except OSError:
                    pass
    return target


def remove_stale_temporaries(ckpt_dir: str | Path) -> None:
    """Temporary files left by a run killed mid-write (never read; safe to drop at start)."""
    for p in Path(ckpt_dir).glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass


def file_sha256(path: str | Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def read_sidecar(path: str | Path) -> str | None:
    """The digest recorded for `path`, None if it has no sidecar; ValueError if it is unreadable."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        text = side.read_text(encoding="ascii", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"checksum file {side} is unreadable ({type(exc).__name__})") from None
    m = re.match(r"\s*([0-9a-fA-F]{64})(\s|$)", text)
    if not m:
        raise ValueError(f"checksum file {side} is corrupted (no sha256 digest in it)")
    return m.group(1).lower()


def verify_checkpoint(path: str | Path) -> bool:
    """True if the file matches its sidecar, False if there is no sidecar; ValueError on a mismatch."""
    path = Path(path)
    expected = read_sidecar(path)
    if expected is None:
        return False
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(f"checkpoint {path} is corrupted or truncated: sha256 {actual[:12]}... does not match "
                         f"{sidecar_path(path).name} ({expected[:12]}...)")
    return True


# torch.save writes a zip archive; files from torch < 1.6 (and `_use_new_zipfile_serialization=False`)
# are a pickle, which starts with the PROTO opcode. Anything else cannot be a torch file.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _looks_like_torch_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith(_TORCH_MAGIC)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint: FileNotFoundError if absent; ValueError (one line, naming the file) if the
    bytes do not match the sidecar, the file is not a readable torch file, it holds anything but
    tensors and plain containers (no code is ever run), or it is not a rils checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        verify_checkpoint(path)
        is_torch = _looks_like_torch_file(path)
    except OSError as exc:
        raise ValueError(f"checkpoint {path} could not be read ({exc.strerror or type(exc).__name__})") from None
    if not is_torch:   # a text file, an image, ...: say what it is not, not what torch's unpickler met
        raise ValueError(f"{path} is not a rils checkpoint (not a torch file)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated or corrupted file, not a torch file, or a pickled object
        kind = ("holds objects other than tensors (refused, not unpickled)"
                if isinstance(exc, pickle.UnpicklingError) else "is unreadable or corrupted")
        raise ValueError(f"checkpoint {path} {kind} ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a rils checkpoint")
    return ckpt


def model_state(ckpt: dict) -> dict:
    """The dual encoder's weights out of a method's state dict (keys 'model.*')."""
    return {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
