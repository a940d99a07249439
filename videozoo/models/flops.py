"""Counting a model's compute per view, the way the published tables count it.

The published figures (pytorchvideo's model zoo, torchvision's weight docs) count one
multiply-add as one FLOP and include convolutions and matrix products only (normalisation,
activations and pooling are not counted). torch's FlopCounterMode counts 2 FLOPs per
multiply-add for the same operators, so its total is halved. The count runs on the meta device:
shapes only, no arithmetic, so every model of the zoo is counted in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from videozoo.models.registry import get_spec
from videozoo.models.spec import ModelSpec

FLOPS_CONVENTION = "GFLOPs = 1e9 multiply-adds of convolutions and matrix products, per view at the eval crop"


def view_input(spec: ModelSpec, *, batch: int = 1, crop: int | None = None, device: str | torch.device = "cpu"):
    """A zero clip of one eval view: (B, 3, T, S, S), or [slow, fast] for two-pathway models."""
    c, t, s, _ = spec.input.input_shape
    s = crop or s
    fast = torch.zeros(batch, c, t, s, s, device=device)
    if spec.input.slow_alpha is None:
        return fast
    idx = torch.linspace(0, t - 1, t // spec.input.slow_alpha).long()
    return [fast[:, :, idx.to(device)], fast]


def count_gmacs(model: Callable, x) -> float:
    """Multiply-adds (billions) of one forward pass of `model` (a module, or one of its methods) on `x`."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def model_gflops(name_or_spec: str | ModelSpec, *, crop: int | None = None) -> float:
    """GFLOPs per view of a registry model at its eval crop (or `crop`), published convention."""
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    return _counted(spec, ("gflops", crop), lambda: _count_gflops(spec, crop))


def model_params(name_or_spec: str | ModelSpec) -> int:
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    return int(_counted(spec, ("params", None), lambda: _count_params(spec)))


# The figures of a spec are counted once per process: the table, `videozoo models` and the checks
# of the published figures all read them. Keyed by the spec object itself (held, so it cannot be
# replaced by another at the same address), so an entry swapped in the registry is counted anew.
_COUNTS: dict[tuple[str, str, int | None], tuple[ModelSpec, float]] = {}


def _counted(spec: ModelSpec, what: tuple[str, int | None], count: Callable[[], float]) -> float:
    key = (spec.name, *what)
    hit = _COUNTS.get(key)
    if hit is None or hit[0] is not spec:
        hit = _COUNTS[key] = (spec, count())
    return hit[1]


def _count_gflops(spec: ModelSpec, crop: int | None) -> float:
    with torch.device("meta"):
        model = spec.build().eval()
    # A video-text model's view is its video side: the text side runs once per label set, not per view
    # (a model without classes and without a text side, such as an encoder, is its forward pass).
    forward = model if spec.cls.has_classifier else getattr(model, "encode_video", model)
    return count_gmacs(forward, view_input(spec, crop=crop, device="meta"))


def _count_params(spec: ModelSpec) -> int:
    with torch.device("meta"):
        model = spec.build()
    return sum(p.numel() for p in model.parameters())
