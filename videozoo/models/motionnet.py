"""MotionNet: a compact network that classifies how things move, built on frame-to-frame correlation.

A 3D CNN trained from scratch has to discover on its own that comparing frames is what matters;
on small data sets that takes it many steps. MotionNet compares frames by construction, as optical
flow networks do (FlowNet's correlation layer):

1. appearance: two per-frame convolutions (1x5x5 and 1x3x3, each at spatial stride 2) map every
   frame to features at 1/4 of the resolution;
2. correlation: for every pair of consecutive frames and every displacement d within `radius`
   cells, the cosine similarity of the features at x in frame t and at x + d in frame t+1, a
   (2 radius + 1)^2-channel map per pair that says where each patch went, whatever it looks like;
   a 1x1x1 projection of the appearance features (`context` channels) goes alongside, so the
   network can tell an object from the background; a BatchNorm puts the two on one scale (the
   similarities of non-negative features all lie in [0, 1], with a large common part);
3. motion: four 3x3x3 convolutions over (pairs, height, width), strided to 1/32 of the input side
   and 1/4 of the pairs, learn the patterns of displacement that make a slide, a zoom (outward or
   inward) or a turn;
4. head: average over the training-size window (sliding, as the ResNets do, over larger test
   crops) and a linear classifier.

Every convolution is followed by BatchNorm and ReLU (folded for inference like the other families).
Without the BatchNorm in front of the motion convolutions, training from scratch sat at chance for
two to five epochs before it started; with it, it starts within the first.
The correlation's multiply-adds ((2 radius + 1)^2 x channels per cell and pair) are not counted by
the FLOP counter, which counts convolutions and matrix products; at the defaults they are about
2.1 M per 8x64x64 clip, under 3% of the total.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.models.base import VideoClassifier, init_fresh_weights, positions_from_map

# Input side / last map's side: appearance (4), then the first and third motion convolutions (2 each)
# and the last (2).
SPATIAL_REDUCTION = 32


class ConvUnit(nn.Module):
    """Conv3d (no bias), BatchNorm, ReLU; 'same' padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), bias=False
        )
        self.norm = nn.BatchNorm3d(out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.norm(self.conv(x)))


class Correlation(nn.Module):
    """(B, C, T, H, W) features -> (B, (2r+1)^2, T-1, H, W) cosine similarities of frame t at x with
    frame t+1 at x + (dx, dy), for |dx|, |dy| <= r (row-major over dy, then dx); zero past the edges."""

    def __init__(self, radius: int):
        super().__init__()
        if radius < 1:
            raise ValueError(f"the correlation radius must be at least 1, got {radius}")
        self.radius = radius

    def forward(self, features: Tensor) -> Tensor:
        r = self.radius
        batch, channels, frames, height, width = features.shape
        # Rows outermost and channels innermost, so that each row of frame t meets rows of frame t+1
        # in one batched matrix product over contiguous memory.
        f = features.float().permute(3, 0, 2, 4, 1).contiguous()  # (H, B, T, W, C)
        f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        pairs = batch * (frames - 1)
        now = f[:, :, :-1].reshape(height * pairs, width, channels)
        later = F.pad(f[:, :, 1:].reshape(height, pairs, width, channels), (0, 0, r, r, 0, 0, r, r))
        span = width + 2 * r
        bands = []
        for dy in range(2 * r + 1):
            rows = later[dy : dy + height].reshape(height * pairs, span, channels)
            # (H * pairs, W, W + 2r): every cell of a row against every cell of the displaced row.
            products = torch.bmm(now, rows.transpose(1, 2))
            # Its band: cell x against x + dx - r for dx = 0..2r, (H * pairs, W, 2r + 1), one view.
            bands.append(products.as_strided((height * pairs, width, 2 * r + 1), (width * span, span + 1, 1)))
        out = torch.stack(bands).view(2 * r + 1, height, batch, frames - 1, width, 2 * r + 1)  # (dy, H, B, T-1, W, dx)
        out = out.permute(2, 0, 5, 3, 1, 4).reshape(batch, (2 * r + 1) ** 2, frames - 1, height, width)
        return out.to(features.dtype)  # (B, D, T-1, H, W)


class LinearHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, num_classes)


def _strided(size: int, stride: int) -> int:
    """Output length of a kernel-3, padding-1 convolution at `stride`."""
    return (size - 1) // stride + 1


class MotionNet(VideoClassifier):
    """Frame-to-frame correlation followed by a small 3D CNN, for clips of shape (B, 3, T, H, W).

    `num_frames` and `crop_size` describe the training clip (they fix the head's pooling window);
    `appearance` holds the widths of the two per-frame convolutions, `radius` the largest
    displacement compared (in cells of 4 pixels), `context` the appearance channels passed beside
    the correlation, `widths` the four motion convolutions' widths.
    """

    classifier_name = "head.proj"

    def __init__(
        self,
        *,
        num_frames: int = 8,
        crop_size: int = 64,
        appearance: tuple[int, int] = (16, 24),
        radius: int = 3,
        context: int = 8,
        widths: tuple[int, int, int, int] = (48, 64, 96, 128),
        dropout: float = 0.0,
        num_classes: int = 8,
    ) -> None:
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"MotionNet compares consecutive frames: num_frames must be at least 2, got {num_frames}")
        a1, a2 = appearance
        w1, w2, w3, w4 = widths
        self.appearance = nn.Sequential(ConvUnit(3, a1, (1, 5, 5), (1, 2, 2)), ConvUnit(a1, a2, (1, 3, 3), (1, 2, 2)))
        self.correlation = Correlation(radius)
        self.context = nn.Conv3d(a2, context, 1) if context > 0 else None
        displacements = (2 * radius + 1) ** 2
        self.motion_norm = nn.BatchNorm3d(displacements + context)
        self.motion = nn.Sequential(
            ConvUnit(displacements + context, w1, (3, 3, 3), (1, 2, 2)),
            ConvUnit(w1, w2, (3, 3, 3), (2, 1, 1)),
            ConvUnit(w2, w3, (3, 3, 3), (1, 2, 2)),
            ConvUnit(w3, w4, (3, 3, 3), (2, 2, 2)),
        )
        self.head = LinearHead(w4, num_classes)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        pairs = _strided(_strided(num_frames - 1, 2), 2)
        side = crop_size // SPATIAL_REDUCTION
        self.head_window = (pairs, side, side)
        init_fresh_weights(self)

    def forward_positions(self, x: Tensor) -> Tensor:
        features = self.appearance(x)  # (B, a2, T, H/4, W/4)
        motion = self.correlation(features)  # (B, (2r+1)^2, T-1, H/4, W/4)
        if self.context is not None:
            motion = torch.cat([motion, self.context(features[:, :, :-1])], dim=1)
        motion = self.motion_norm(motion)
        return positions_from_map(self.motion(motion), self.head_window)  # (B, P, w4)
