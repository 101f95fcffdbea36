"""What a result ran on and at: the device or CPU with its thread count and instruction set
(`_machine`, `cpu_isa`) and the source commit (`source_commit`), so that a kept report names both."""
from __future__ import annotations

import os
import platform
import subprocess

import torch

from ..precision import native_bf16


def source_commit() -> str | None:
    """The git commit of the source tree this package runs from ("+dirty" with uncommitted changes
    to the package's own files), or None outside a git checkout: a kept result names its code."""
    # the package's root, not this subpackage's folder: `git status -- .` below must see every module
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _machine(dev) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    bf16 = "bf16 native" if native_bf16(dev) else "bf16 emulated"
    return f"{cpu}, {torch.get_num_threads()} threads, {cpu_isa()} ({bf16})"


def cpu_isa() -> str:
    """The instruction set PyTorch's CPU kernels dispatch to (AVX512, AVX2, ...): what
    ATEN_CPU_CAPABILITY caps, so a capped run names the capped set."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return platform.machine()
