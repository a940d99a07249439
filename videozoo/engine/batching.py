"""How many views go through the model at once.

A forward pass of B views holds a few activations of B views at a time; for slow_r50 one view's
largest activation (the stem and res2 outputs, 8.4 M values) is 34 MB in fp32, so the 30 views of a
10x3 evaluation in one pass would need several GB. Throughput on a CPU does not improve past a few
views per pass, so the engine takes micro-batches sized to a memory budget: the budget divided by an
estimate of one view's working set (``WORKING_SET_FACTOR`` x its largest activation, measured once
on a small example).

On a CPU a second limit applies: a pass's largest activation stays under ``CPU_PASS_BYTES``. Past
that, the activations of one pass no longer stay in the caches and each view costs more, not less
(measured per view on a 2-core AMD Zen 5, fp32 with oneDNN capped at AVX2 and bf16: slow_r50 and
mvit_base_16x4 are fastest at 1-2 views per pass, slowfast_r50 at 2 in fp32, x3d_xs at 4-8 and 70%
slower per view at 16; motion_tiny and r3d_18 hardly change). Fewer views per pass also hold less
memory.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn

from videozoo.engine.optimize import shape_passes

# Live tensors during a residual block: its input, the branch's intermediate, the output, and the
# convolution's scratch; measured peaks of the zoo's CNNs stay within 4x the largest activation.
WORKING_SET_FACTOR = 4
DEFAULT_BUDGET_BYTES = 512 * 2**20
MAX_AUTO_BATCH = 16
CPU_PASS_BYTES = 80 * 2**20
CPU_MAX_AUTO_BATCH = 8


def largest_activation_bytes(model: nn.Module, example) -> int:
    """Bytes of the largest output of any module for one view of ``example``'s shape.

    Read from output shapes in the cheapest pass that runs (an empty batch: no arithmetic).
    """
    for runner, x in shape_passes(model, example):
        try:
            return _largest_output(runner, x)
        except (RuntimeError, NotImplementedError):
            continue
    raise RuntimeError(f"{type(model).__name__}: cannot run an example to measure its activations")


def _largest_output(model: nn.Module, example) -> int:
    largest = 0

    def hook(_module, _inp, out) -> None:
        nonlocal largest
        for t in out if isinstance(out, (list, tuple)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() > 0:
                per_view = math.prod(t.shape[1:]) * t.element_size()  # (B, ...): one view's share
                largest = max(largest, per_view)

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return largest


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a batch may use on ``device``: free GPU memory, or the OS's MemAvailable."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_budget(device: torch.device) -> int:
    """The activation budget: ``VIDEOZOO_BATCH_MEMORY_MB``, else 512 MB (CPU) capped by what is free."""
    env = os.environ.get("VIDEOZOO_BATCH_MEMORY_MB")
    if env:
        return int(float(env) * 2**20)
    free = available_memory_bytes(device)
    if device.type == "cuda" and free is not None:
        return free // 2
    return min(DEFAULT_BUDGET_BYTES, free // 4) if free else DEFAULT_BUDGET_BYTES


def choose_batch_size(per_view_bytes: int, budget_bytes: int, *, device: torch.device | str = "cpu") -> int:
    """Views per forward pass: as many as fit ``budget_bytes`` (at least one), and on a CPU as many
    as keep a pass's largest activation under ``CPU_PASS_BYTES`` (at most ``CPU_MAX_AUTO_BATCH``)."""
    need = max(per_view_bytes * WORKING_SET_FACTOR, 1)
    size = min(MAX_AUTO_BATCH, budget_bytes // need)
    if torch.device(device).type == "cpu":
        size = min(size, CPU_MAX_AUTO_BATCH, CPU_PASS_BYTES // max(per_view_bytes, 1))
    return max(1, size)
