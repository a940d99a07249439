"""Making an eval-mode model cheaper to run without changing what it computes.

- BatchNorm folding: in eval mode a BatchNorm that directly follows a convolution is an affine
  map per output channel, so it folds into the convolution's weight and bias.
- channels-last 3D memory layout (N, T, H, W, C strides), which oneDNN's and cuDNN's 3D
  convolutions run faster in.
- on the CPU, ReLU fused into the convolution before it (oneDNN's post-op): the convolution writes
  max(0, y) as it writes y, instead of a second pass over an activation of tens of MB that a
  2-core machine's memory bandwidth makes cost a third to a half of the convolution itself.
  The values are the same (the ReLU is applied to the same float32 accumulator result).
- on Linux/glibc, keeping freed memory for reuse (`keep_freed_memory`): a video model's activations
  are hundreds of MB each, which glibc maps fresh from the kernel and unmaps on every free, so each
  forward pass pays a page fault per 4 KiB page touched; reusing the heap removes that cost.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from typing import TypeAlias, TypeVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from videozoo.engine.precision import cpu_has_bf16

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
Conv: TypeAlias = nn.Conv1d | nn.Conv2d | nn.Conv3d
BatchNorm: TypeAlias = nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@functools.cache
def keep_freed_memory() -> bool:
    """Make this process keep freed memory on its heap for reuse instead of handing it back.

    glibc serves blocks over 32 MiB with a fresh mmap and unmaps them on free; a clip batch's
    activations are that size, so every layer of every forward pass would start on pages the kernel
    must fault in and zero (a fifth to a third of slow_r50's 10x3 forward time on a 2-core CPU). With mmap off and
    trimming off, freed blocks are reused. The cost: the process keeps its peak memory until it ends,
    which suits the `videozoo` commands (they call this) and long inference services; call it yourself
    to get the same in a Python program. Returns False where it does not apply (not glibc, or
    VIDEOZOO_KEEP_FREED_MEMORY=0).
    """
    if os.environ.get("VIDEOZOO_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no glibc malloc to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def meta_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on the meta device: shapes, no data."""
    memo: dict[int, object] = {}
    for t in [*model.parameters(), *model.buffers()]:
        empty = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(empty, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else empty
    return copy.deepcopy(model, memo)


def _map(fn, x):
    return [fn(t) for t in x] if isinstance(x, (list, tuple)) else fn(x)


def shape_passes(model: nn.Module, example) -> Iterator[tuple[nn.Module, object]]:
    """Ways to run ``example``'s shapes through ``model``, cheapest first, as (module, input).

    A batch of zero views runs every layer in microseconds (no arithmetic, no kernel set-up) and
    shows each module's output shape per view; models that cannot take an empty batch (MViT's
    reshapes) run on a meta-device twin, and failing that on ``example`` itself.
    """
    yield model, _map(lambda t: t[:0], example)
    yield meta_twin(model), _map(lambda t: torch.empty_like(t, device="meta"), example)
    yield model, example


def _conv_bn_pairs(model: nn.Module, example) -> list[tuple[Conv, BatchNorm]]:
    """(conv, bn) pairs where the BatchNorm's input is exactly that convolution's output."""
    for runner, x in shape_passes(model, example):
        try:
            found = _trace_conv_bn(runner, x)
        except (RuntimeError, NotImplementedError):
            continue
        if runner is model:
            return found
        name = {m: n for n, m in runner.named_modules()}
        real = dict(model.named_modules())
        # The twin is a deep copy: the module of the same name in ``model`` has the same type.
        return [(cast(Conv, real[name[conv]]), cast(BatchNorm, real[name[bn]])) for conv, bn in found]
    raise RuntimeError(f"{type(model).__name__}: cannot run an example to find its conv -> BatchNorm pairs")


def _trace_conv_bn(model: nn.Module, example) -> list[tuple[Conv, BatchNorm]]:
    """Run ``example`` once: every convolution output is remembered (kept alive, so its identity
    cannot be reused) and each BatchNorm checks whether its input is one of them."""
    produced: dict[int, Conv] = {}
    alive: list[torch.Tensor] = []
    pairs: dict[BatchNorm, Conv] = {}

    def after_conv(mod: Conv, inp, out):
        produced[id(out)] = mod
        alive.append(out)

    def before_bn(mod: BatchNorm, inp):
        conv = produced.get(id(inp[0]))
        if conv is not None:
            pairs.setdefault(mod, conv)

    handles = [
        m.register_forward_hook(after_conv) if isinstance(m, _CONV_TYPES) else m.register_forward_pre_hook(before_bn)
        for m in model.modules()
        if isinstance(m, _CONV_TYPES + _BN_TYPES)
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    # A convolution whose output feeds two BatchNorms cannot absorb both.
    uses: dict[Conv, int] = {}
    for conv in pairs.values():
        uses[conv] = uses.get(conv, 0) + 1
    return [(conv, bn) for bn, conv in pairs.items() if uses[conv] == 1]


def fold_batchnorm(model: nn.Module, example) -> int:
    """Fold every BatchNorm that follows a convolution into it, in place; returns how many."""
    if model.training:
        raise ValueError("BatchNorm folding is for eval mode: call model.eval() first")
    pairs = _conv_bn_pairs(model, example)
    replaced: dict[nn.Module, nn.Module] = {}
    for conv, bn in pairs:
        # running_mean and running_var are both set or both None (track_running_stats=False).
        if not bn.track_running_stats or bn.running_var is None or bn.running_mean is None:
            continue
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var.double() + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            shift = -bn.running_mean.double() * scale
            if bn.bias is not None:
                shift = shift + bn.bias.double()
            # The per-channel factors are computed in double; the kernel is scaled in place in its
            # own dtype (one pass over the weights, no temporary copy of them).
            conv.weight.mul_(scale.to(conv.weight.dtype).view(-1, *([1] * (conv.weight.dim() - 1))))
            b = shift if conv.bias is None else conv.bias.double() * scale + shift
            if conv.bias is None:
                conv.bias = nn.Parameter(b.to(conv.weight.dtype))
            else:
                conv.bias.copy_(b.to(conv.bias.dtype))
        replaced[bn] = nn.Identity()
    _swap_modules(model, replaced)
    return len(replaced)


def _swap_modules(model: nn.Module, replaced: dict[nn.Module, nn.Module]) -> None:
    """Put ``replaced[m]`` wherever ``model`` holds the submodule ``m``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if child in replaced:
                setattr(parent, name, replaced[child])


@functools.cache
def _pointwise_conv():
    """oneDNN's convolution with a fused element-wise op, where this torch build has it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast would run a convolution in here, or None outside autocast."""
    try:
        on = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if on else None
    except TypeError:  # torch < 2.4 spelling
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


class ConvReLU(nn.Module):
    """A CPU convolution that applies ReLU to its output in the same pass (oneDNN post-op).

    Follows autocast as the convolution would: under a bf16 autocast the input and the weights run
    in bf16 (the weights converted once, not per call). ``conv`` keeps the original module, its
    parameters, and the state dict's names.
    """

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv
        self._cast: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        dtype = _autocast_dtype(x.device.type) or x.dtype
        if dtype == c.weight.dtype:
            w, b = c.weight, c.bias
        else:
            if dtype not in self._cast:
                bias = None if c.bias is None else c.bias.detach().to(dtype)
                self._cast[dtype] = (c.weight.detach().to(dtype), bias)
            w, b = self._cast[dtype]
        if dtype != torch.float32 and not (dtype == torch.bfloat16 and cpu_has_bf16()):
            # oneDNN's fused kernel has no bf16 emulation for CPUs without bf16 instructions
            # (AVX2 only); the plain convolution emulates it, then the ReLU runs on its own.
            return F.conv3d(x.to(dtype), w, b, c.stride, c.padding, c.dilation, c.groups).relu_()
        return _pointwise_conv()(
            x.to(dtype), w, b, list(c.padding), list(c.stride), list(c.dilation), c.groups, "relu", [], ""
        )


def _conv_relu_pairs(model: nn.Module, example) -> list[tuple[nn.Module, nn.Module]]:
    """(conv, in-place ReLU) pairs where every call of the ReLU takes a convolution's output as is
    (through folded, now Identity, BatchNorms) and every output of that convolution goes to it."""
    # Output tensor id -> (its convolution, its version when made): an in-place operation between
    # the two (a residual ``out += identity``) bumps the version, and that ReLU is not fused.
    produced: dict[int, tuple[nn.Module, int]] = {}
    alive: list[torch.Tensor] = []
    conv_calls: dict[nn.Module, int] = {}
    relu_calls: dict[nn.Module, int] = {}
    fed: dict[nn.Module, list[nn.Module]] = {}

    def after_conv(mod, inp, out):
        produced[id(out)] = (mod, out._version)
        alive.append(out)
        conv_calls[mod] = conv_calls.get(mod, 0) + 1

    def before_relu(mod, inp):
        relu_calls[mod] = relu_calls.get(mod, 0) + 1
        conv, version = produced.get(id(inp[0]), (None, -1))
        if conv is not None and inp[0]._version == version:
            fed.setdefault(mod, []).append(conv)

    handles = [
        m.register_forward_hook(after_conv) if isinstance(m, nn.Conv3d) else m.register_forward_pre_hook(before_relu)
        for m in model.modules()
        if isinstance(m, nn.Conv3d) or (isinstance(m, nn.ReLU) and m.inplace)
    ]
    try:
        with torch.no_grad():
            model(_map(lambda t: t[:0], example))  # shapes only: an empty batch
    except (RuntimeError, NotImplementedError):
        return []
    finally:
        for h in handles:
            h.remove()
    pairs: list[tuple[nn.Module, nn.Module]] = []
    for relu, convs in fed.items():
        if len(convs) != relu_calls[relu]:
            continue  # some call of this ReLU takes something else (a sum, a pooled tensor)
        # The ReLU goes away only if every convolution feeding it takes it over.
        if all(
            convs.count(conv) == conv_calls[conv] and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            for conv in convs
        ):
            pairs.extend((conv, relu) for conv in dict.fromkeys(convs))
    return pairs


def fuse_conv_relu(model: nn.Module, example) -> int:
    """Fuse each in-place ReLU into the convolution that feeds it (CPU, oneDNN); returns how many."""
    if _pointwise_conv() is None:
        return 0
    pairs = _conv_relu_pairs(model, example)
    replaced: dict[nn.Module, nn.Module] = {conv: ConvReLU(cast(nn.Conv3d, conv)) for conv, _ in pairs}
    replaced.update({relu: nn.Identity() for _, relu in pairs})
    _swap_modules(model, replaced)
    return len(pairs)


def to_channels_last(x):
    """Channels-last 3D layout for a clip tensor (or each pathway of [slow, fast])."""
    if isinstance(x, (list, tuple)):
        return [to_channels_last(t) for t in x]
    return x.contiguous(memory_format=torch.channels_last_3d) if x.dim() == 5 else x


def optimize_for_inference(
    model: ModuleT,
    example,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    fuse_relu: bool = False,
    inplace: bool = False,
) -> ModuleT:
    """An eval-mode copy of `model` with BatchNorm folded and weights in channels-last layout.

    `example` is a small input of the model's expected shape, used once to find conv->BN pairs.
    ``fuse_relu`` (CPU eager only: the fused modules call oneDNN directly and do not export) fuses
    in-place ReLUs into the convolutions before them.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    if fold_bn:
        fold_batchnorm(model, example)
    if channels_last:
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
    if fuse_relu:
        fuse_conv_relu(model, example)
    return model
