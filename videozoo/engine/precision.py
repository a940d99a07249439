"""Which arithmetic precision a forward pass runs in, chosen for the hardware at hand.

``auto`` (the default) picks bf16 only where the hardware computes it natively (a CPU with
AVX512_BF16 or AMX, a CUDA GPU that supports it) and fp32 otherwise, also where
``ONEDNN_MAX_CPU_ISA`` keeps oneDNN below the bf16 instructions. On a CPU without native bf16,
PyTorch emulates bf16 convolutions, which runs them tens of times slower than fp32: an explicit
``bf16`` there warns once, with the slowdown measured on this machine. ``fp16`` is for CUDA only.
fp32 computes exactly what the reference implementations compute.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class EmulatedPrecisionWarning(UserWarning):
    """The chosen precision is emulated by this hardware, so it is slower than fp32."""


# oneDNN's instruction-set levels below which bf16 arithmetic is emulated (ONEDNN_MAX_CPU_ISA caps
# what oneDNN uses; with a cap under AVX512_CORE_BF16 the CPU's bf16 units go unused).
_EMULATING_ISA_CAPS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.cache
def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX) and oneDNN may use it."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap in _EMULATING_ISA_CAPS:
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_bf16()
    return False


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` is what results record ("fp32", "bf16" or "fp16")."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    def autocast(self):
        """The context a forward pass runs under (autocast for bf16/fp16, nothing for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def __str__(self) -> str:
        return self.name


def resolve_precision(precision: str | Precision, device: torch.device | str, *, warn: bool = True) -> Precision:
    """``auto``/``fp32``/``bf16``/``fp16`` for ``device`` -> a :class:`Precision`, or a clear error."""
    if isinstance(precision, Precision):
        return precision
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        return Precision("bf16" if native_bf16(device) else "fp32", device.type)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"--precision fp16 is for CUDA; on {device.type} use bf16 (where native) or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16() and warn:
        _warn_emulated_bf16()
    return Precision(precision, device.type)


@functools.cache
def emulated_bf16_slowdown() -> float:
    """How many times slower a bf16 convolution runs than fp32 on this CPU (a ~0.5 s measurement)."""
    conv = torch.nn.Conv3d(32, 32, (1, 3, 3), padding=(0, 1, 1), bias=False)
    x = torch.randn(1, 32, 4, 28, 28)

    def rate(dtype: torch.dtype) -> float:
        c, inp = conv.to(dtype), x.to(dtype)
        with torch.inference_mode():
            c(inp)  # primitive creation
            n, t0 = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < 0.1:
                c(inp)
                n += 1
        return (time.perf_counter() - t0) / n

    return rate(torch.bfloat16) / rate(torch.float32)


_warned = False


def _warn_emulated_bf16() -> None:
    global _warned
    if _warned:
        return
    _warned = True
    slowdown = emulated_bf16_slowdown()
    message = (
        f"this CPU has no native bf16 (no AVX512_BF16 or AMX): bf16 is emulated, and a convolution "
        f"measured {slowdown:.0f}x slower than fp32 here; --precision auto or fp32 is faster"
    )
    warnings.warn(message, EmulatedPrecisionWarning, stacklevel=3)


def precision_context(precision: str | Precision, device: torch.device | str):
    """The autocast context of ``precision`` on ``device`` (training and one-off forwards)."""
    return resolve_precision(precision, device).autocast()
