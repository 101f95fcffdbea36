"""The run folder: one run holds it at a time (an OS lock), a start never writes over an earlier run
by accident, and a start refused for bad input takes back what it made."""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import torch

from ..checkpoint import remove_stale_temporaries
from .config import Config, ConfigError, dump_config
from .metrics import _json_record
from .resume_check import append_history

try:
    import fcntl
except ImportError:   # Windows: no flock, so a folder is not locked there
    fcntl = None

LOCK_FILE = ".lock"
# What a start made, in the order to take it back: (path, the bytes it held before, or None if new).
Made = list[tuple[Path, bytes | None]]

_held: set[int] = set()   # the descriptors of this process's locks


def _close_held_in_child() -> None:
    """A forked child (a data-loader worker) shares the lock's open file, and a flock lasts while any
    copy of it is open: a worker that outlived its killed run would keep the folder locked."""
    for fd in _held:
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class FolderLock:
    """Rank 0's exclusive flock on `output_dir/.lock` for the run's lifetime; the file holds the pid
    that a refused second start names. The kernel drops a flock when its process ends, however it
    ends, so a killed run never blocks its folder: only the flock counts, never the file's existence.
    Without fcntl, or on a file system that cannot lock, the folder is used unlocked."""

    def __init__(self):
        self.path: Path | None = None
        self.fd: int | None = None

    @classmethod
    def take(cls, out: Path, made: Made, log) -> FolderLock:
        """Make `out` (listed in `made`) and lock it, or ConfigError: in use, or cannot be made."""
        lock = cls()
        lock._acquire(out, made, log)
        return lock

    def _acquire(self, out: Path, made: Made, log) -> None:
        self.path = out / LOCK_FILE
        try:
            make_dirs(out, made)
            if fcntl is None:
                return
            # A holder removes the file as it lets go. A start that opened the file just before
            # may then lock one that is no longer there (or find it gone): it tries again.
            for _ in range(10):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                state = _try_lock(fd)
                if state == "unsupported":
                    os.close(fd)
                    log(f"warning: cannot lock {out} on this file system; nothing stops a second run "
                        f"from using it at the same time")
                    return
                if state == "locked" and _same_file(fd, self.path):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    self.fd = fd
                    _held.add(fd)
                    return
                os.close(fd)
                if state == "busy" and ((pid := _holder(self.path)) is not None or self.path.exists()):
                    raise ConfigError(in_use(out, pid))
        except OSError as exc:
            raise unwritable(out, exc) from None
        raise ConfigError(in_use(out, None))

    def moved_aside(self, aside: Path, made: Made, log) -> None:
        """The folder (with this lock's file) was moved to `aside`: let go of it there and lock a
        fresh folder at the old path."""
        out = self.path.parent
        self.path = aside / LOCK_FILE
        self.release()
        self._acquire(out, made, log)

    def release(self) -> None:
        """Remove the lock file if it is still this lock's, then unlock (by closing it)."""
        if self.fd is None:
            return
        if _same_file(self.fd, self.path):
            try:
                self.path.unlink()
            except OSError:
                pass
        _held.discard(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(fd: int) -> str:
    """"locked", "busy" (another process holds it) or "unsupported" (a file system without flock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "locked"
    except OSError as exc:
        return "busy" if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else "unsupported"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _holder(path: Path, wait_s: float = 1.0) -> int | None:
    """The pid in a held lock file (the holder writes it just after locking: wait a moment for it), or
    None: the file is gone (its holder let go) or never got one."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            text = ""
        if text.isdigit():
            return int(text)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def in_use(out: Path, pid: int | None) -> str:
    holder = f"another run (pid {pid})" if pid is not None else "another run"
    return f"output_dir {out} is in use by {holder}; wait for it or choose another output_dir"


def unwritable(out: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"output_dir: cannot write the run folder {out}: "
                       f"{exc.strerror or exc} ({exc.filename or out})")


def make_dirs(path: Path, made: Made) -> None:
    """mkdir -p, listing each folder it makes at the front of `made`, deepest first (never one that was there)."""
    made[:0] = [(p, None) for p in (path, *path.parents) if not p.exists() and not p.is_symlink()]
    path.mkdir(parents=True, exist_ok=True)


def existing_run_step(out: Path) -> int | None:
    """The step an earlier run in `out` reached, or None if `out` holds no run. A run is a checkpoint
    or a non-empty metrics.jsonl; an empty folder, or one with only config.yaml (a run stopped before
    its first step), is free to use."""
    ckpt_dir, metrics = out / "checkpoints", out / "metrics.jsonl"
    try:
        steps = [int(p.name[5:13]) for p in ckpt_dir.glob("step_*.pt") if p.name[5:13].isdigit()]
        latest = (ckpt_dir / "latest.pt").is_file()
        logged = metrics.is_file() and metrics.stat().st_size > 0
        if logged:
            steps += [rec["step"] for ln in metrics.read_text(encoding="utf-8", errors="replace").splitlines()
                      if (rec := _json_record(ln)) is not None]
    except OSError:
        return None     # unreadable: the mkdir / config.yaml write that follows will say why
    if latest:
        try:   # mmap: the step without reading the tensors
            steps.append(int(torch.load(ckpt_dir / "latest.pt", mmap=True, weights_only=True)["step"]))
        except Exception:
            pass
    if not (steps or latest or logged):
        return None
    return int(max(steps, default=0))


def claim_output_dir(cfg: Config, out: Path, lock: FolderLock | None, log, made: Made) -> None:
    """Never start over an earlier run by accident: without `resume` it would truncate metrics.jsonl
    and overwrite latest.pt. `overwrite=true` moves the old run aside (rank 0, the one holding `lock`;
    None on the other ranks); it never deletes. Every rank checks (read-only), so they all stop with the
    same ConfigError."""
    if cfg.overwrite and cfg.resume:
        raise ConfigError(f"overwrite=true starts over and resume={cfg.resume} continues; set only one")
    if cfg.resume:
        return
    step = existing_run_step(out)
    if step is None:
        return
    if not cfg.overwrite:
        raise ConfigError(f"{out} already holds a run at step {step}: pass resume=latest to continue "
                          f"or overwrite=true to start over")
    if lock is not None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = out.with_name(f"{out.name}.old-{stamp}")
        n = 1
        while aside.exists() or aside.is_symlink():
            aside, n = out.with_name(f"{out.name}.old-{stamp}-{n}"), n + 1
        try:
            out.rename(aside)
        except OSError as exc:
            raise ConfigError(f"overwrite: cannot move {out} aside to {aside}: {exc.strerror or exc}") from None
        log(f"overwrite=true: moved the earlier run (step {step}) from {out} to {aside}")
        lock.moved_aside(aside, made, log)


def write_run_folder(cfg: Config, out: Path, resumed, header: str, made: Made) -> None:
    """Rank 0: checkpoints/, and config.yaml for a fresh start (a resume never rewrites the run's
    original) or the resume's changes appended to config_history.yaml; what it makes goes into `made`.
    A folder it cannot write is a ConfigError."""
    ckpt_dir, config_file = out / "checkpoints", out / "config.yaml"
    try:
        # What this start makes, deepest first, for train() to take back if bad input (data,
        # init_from, the teacher) is found before the first step; an existing folder is never listed.
        make_dirs(ckpt_dir, made)
        if resumed.ckpt is None and not config_file.exists() and not config_file.is_symlink():
            made.insert(0, (config_file, None))
        elif resumed.ckpt is None and (before := _file_bytes(config_file)) is not None:   # unreadable: left alone
            made.insert(0, (config_file, before))
        if resumed.ckpt is None:
            dump_config(cfg, config_file, header=header)
        elif resumed.overridden or resumed.changed:
            append_history(out / "config_history.yaml", resumed.ckpt["step"], resumed.overridden, resumed.changed)
    except OSError as exc:
        raise unwritable(out, exc) from None
    remove_stale_temporaries(ckpt_dir)


def remove_made(made: Made) -> None:
    """Take back what a refused start made, in order, each (path, the bytes it held before or None):
    files it overwrote get their bytes back, files it created go, then folders it created, and only if
    they are empty (rmdir, never a recursive delete), so nothing of an earlier run can go."""
    for path, before in made:
        try:
            if before is not None:
                path.write_bytes(before)
            elif path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        except OSError:
            pass


def _file_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None
