"""Tubelet patch embedding: a clip cut into non-overlapping space-time patches, each projected."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


class PatchEmbed3d(nn.Module):
    """A Conv3d whose kernel equals its stride: (B, C, T, H, W) -> (B, T'*H'*W', D), time-major.

    tubelet: (t, h, w) patch size. A tubelet of one frame (t = 1) is a per-frame 2D patch
    embedding (TimeSformer's) with the same token order: frame by frame, rows then columns.
    The weight is stored (D, C, t, h, w); `from_2d_weight` files hold (D, C, h, w).
    """

    def __init__(self, in_channels: int, dim: int, tubelet: tuple[int, int, int], *, bias: bool = True) -> None:
        super().__init__()
        self.tubelet = tubelet
        # bias=False for CLIP's patch embedding, whose convolution has none.
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=tubelet, stride=tubelet, bias=bias)

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W'): the token grid of a clip of that size."""
        t, h, w = self.tubelet
        return frames // t, height // h, width // w

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)  # (B, D, T', H', W')
        return x.flatten(2).transpose(1, 2)  # (B, T'*H'*W', D)
