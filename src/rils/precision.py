"""Where a model runs and in which number format: the one place that resolves "auto" and builds
the autocast context (the engine, `rils bench`, evaluation and viz all go through here).

Precision vocabulary (as open_clip's `--precision`):
  auto  bf16 where the hardware computes it natively (CUDA with bf16, CPUs with AVX-512-BF16 or
        AMX), fp32 elsewhere. On a CPU without those instructions PyTorch *emulates* bf16 matmuls,
        about 50-70x slower than fp32, so "auto" never picks bf16 there.
  bf16  bf16 autocast (loss heads stay fp32, see rils.losses); warns once where it is emulated.
  fp16  fp16 autocast with a gradient scaler (GPUs without bf16: V100, T4). The CUDA path is
        untested until a run on such a device; the CPU path is tested.
  tf32  fp32 storage, TF32 tensor-core matmuls and convolutions on Ampere and newer GPUs; plain
        fp32 on a CPU.
  fp32  no autocast.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "bf16", "fp16", "tf32", "fp32")
DEVICES = ("auto", "cpu", "cuda")


class EmulatedBf16Warning(UserWarning):
    """bf16 was asked for on a CPU that emulates it."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` is CUDA when available, else the CPU; anything else is passed to torch.device."""
    import torch  # here, not at the top: `rils --help` must not wait for torch
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls in hardware (AVX-512-BF16 or AMX), as oneDNN sees it; False
    when oneDNN is capped below those instructions (ONEDNN_MAX_CPU_ISA=AVX2, say, as on a laptop)."""
    import os

    import torch

    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ISAS_WITHOUT_BF16:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device) -> bool:
    import torch
    device = resolve_device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: str | torch.device = "auto") -> tuple[str, str]:
    """(the precision to run: "bf16", "fp16", "tf32" or "fp32"; the reason in a few words).
    Raises ValueError for an unknown name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = resolve_device(device)
    native = native_bf16(device)
    what = "this GPU" if device.type == "cuda" else "this CPU"
    if precision == "auto":
        if native:
            return "bf16", f"auto: {what} computes bf16 natively"
        return "fp32", f"auto: {what} has no native bf16 (it would be emulated, ~50x slower matmuls)"
    if precision == "bf16" and not native:
        warn_emulated_bf16(device)
        return "bf16", f"asked for; emulated on {what}"
    if precision == "tf32" and device.type != "cuda":
        return "fp32", "tf32 asked for: a CUDA matmul mode; fp32 on this CPU"
    return precision, "asked for"


def configure_matmul(device, precision: str) -> None:
    """Process-wide matmul settings a precision needs: TF32 on CUDA for "tf32" (off otherwise, as
    PyTorch's default), so an earlier run in the same process leaves nothing behind."""
    import torch
    if resolve_device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def grad_scaler(device, precision: str):
    """fp16's dynamic loss scaler (fp16 gradients underflow without it), or None."""
    import torch
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(resolve_device(device).type)


_warned: set[str] = set()


def warn_emulated_bf16(device: torch.device) -> None:
    """Once per process and device type."""
    if device.type in _warned:
        return
    _warned.add(device.type)
    warnings.warn(f"bf16 is emulated on this {'GPU' if device.type == 'cuda' else 'CPU'}: expect ~50x slower "
                  f"matmuls; use precision=auto", EmulatedBf16Warning, stacklevel=3)


@contextlib.contextmanager
def full_precision():
    """Autocast off on every device type, for loss heads that must run in fp32 inside a bf16 step.
    Plain nested `with` blocks, not an ExitStack: torch.compile traces these (train.compile)."""
    import torch
    with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
        yield


def autocast(device: str | torch.device, precision: str):
    """The autocast context for a precision ("auto" is resolved here; "tf32" and "fp32" have none)."""
    import torch
    device = resolve_device(device)
    if precision == "auto":
        precision = resolve_precision(precision, device)[0]
    if precision in ("fp32", "tf32"):
        return contextlib.nullcontext()
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
