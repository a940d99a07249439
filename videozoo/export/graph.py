"""The graph every export traces: a model's inference path with named inputs and the engine's outputs.

The model is prepared as the engine prepares it (eval mode, BatchNorm folded into the convolutions
before it: the same arithmetic up to float32 rounding) and wrapped so that the traced program takes
``video`` (B, 3, T, H, W), or ``slow`` (B, 3, T / alpha, H, W) and ``fast`` (B, 3, T, H, W) for
two-pathway models, and returns a dict of the three engine outputs computed in one pass:
``logits`` (B, K), ``scores`` (B, K: softmax per head position, averaged, as the official
evaluation scores) and ``features`` (B, D). The batch axis is symbolic unless a fixed batch is asked.

The zoo's families are plain module code (no custom autograd functions, no data-dependent control
flow), MViT's attention pooling and SlowFast's lateral connections included, so torch.export traces
them as they are.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.engine.optimize import optimize_for_inference
from videozoo.engine.runtime import ONE_PATHWAY_INPUTS, OUTPUT_NAMES, TWO_PATHWAY_INPUTS
from videozoo.models.base import VideoClassifier
from videozoo.models.flops import view_input
from videozoo.models.registry import get_spec

#: the batch of the example a dynamic-batch program is traced with (1 would be specialised)
TRACE_BATCH = 2
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _named(outputs: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
    return dict(zip(OUTPUT_NAMES, outputs, strict=True))


class OnePathwayGraph(nn.Module):
    """video (B, 3, T, H, W) -> {"logits", "scores", "features"}."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: Tensor) -> dict[str, Tensor]:
        return _named(self.model.inference_outputs(video))


class TwoPathwayGraph(nn.Module):
    """slow (B, 3, T / alpha, H, W), fast (B, 3, T, H, W) -> {"logits", "scores", "features"}."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, slow: Tensor, fast: Tensor) -> dict[str, Tensor]:
        return _named(self.model.inference_outputs([slow, fast]))


def input_names(clip: InputConfig) -> tuple[str, ...]:
    return TWO_PATHWAY_INPUTS if clip.slow_alpha is not None else ONE_PATHWAY_INPUTS


def example_inputs(
    name: str, clip: InputConfig, *, batch: int, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, ...]:
    """Zero clips of ``clip``'s eval view, one per graph input."""
    x = view_input(get_spec(name).replace(input=clip), batch=batch)
    return tuple(t.to(dtype) for t in x) if isinstance(x, list) else (x.to(dtype),)


def prepare(
    model: VideoClassifier, clip: InputConfig, *, precision: str = "fp32", inplace: bool = False
) -> VideoClassifier:
    """The model as the export traces it: eval mode, BatchNorm folded, cast to ``precision``."""
    if precision not in DTYPES:
        raise ValueError(f"--precision {precision!r}: an export is fp32 or fp16")
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    fixed = bool(getattr(type(model), "fixed_input_size", False))
    # A small crop keeps the conv->BN pairing pass cheap; the pairs do not depend on the size.
    example = view_input(get_spec(model.model_name).replace(input=clip), crop=None if fixed else 64)
    # Channels-last weights help the eager CPU kernels only; an exported graph stores plain arrays.
    optimize_for_inference(model, example, inplace=True, channels_last=False)
    return model.to(DTYPES[precision])


def trace(
    model: VideoClassifier, clip: InputConfig, *, batch: int | None = None, precision: str = "fp32"
) -> torch.export.ExportedProgram:
    """The ExportedProgram of a prepared ``model`` for clips of ``clip``; ``batch`` None: a symbolic batch."""
    names = input_names(clip)
    graph = TwoPathwayGraph(model) if len(names) == 2 else OnePathwayGraph(model)
    args = example_inputs(model.model_name, clip, batch=batch or TRACE_BATCH, dtype=DTYPES[precision])
    dynamic = None
    if batch is None:
        # One symbol for every input: the pathways of a two-pathway clip share their batch.
        dim = torch.export.Dim("batch", min=1)
        dynamic = {name: {0: dim} for name in names}
    with torch.no_grad():
        return torch.export.export(graph, args, dynamic_shapes=dynamic, strict=False)
