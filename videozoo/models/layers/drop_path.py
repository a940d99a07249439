"""Stochastic depth for residual branches."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class DropPath(nn.Module):
    """In training, zero a residual branch for a random subset of the batch and rescale the rest.

    The identity in eval mode and at p = 0, so inference never pays for it.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        # One draw per sample, broadcast over every other dimension: (B, 1, ..., 1).
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device) < keep
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
