"""Rotary position embedding over a space-time token grid (3D RoPE, V-JEPA 2's).

Each head's channels are split into three equal even-sized bands, rotated by the token's frame,
row and column index respectively; channels left over (head width not a multiple of 6) pass
unrotated. Within a band of `n` channels, channel pairs (2k, 2k+1) are rotated, and the angle of
channel `j` is `position * 10000 ** -((j mod n/2) / (n/2))`: the band's cosine and sine tables are
its `n/2` frequencies written twice, end to end, which is how the published models were trained
(not the interleaved `j // 2` of other RoPE variants), so it is reproduced as it is.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_band(head_dim: int) -> int:
    """Channels per axis: the largest even number not above head_dim / 3."""
    return 2 * ((head_dim // 3) // 2)


def rope_tables(grid: tuple[int, int, int], head_dim: int, *, device: torch.device | str | None = None) -> Tensor:
    """(2, N, head_dim) float32 cosine and sine tables for the N = T*H*W tokens of `grid`, in
    time-major token order (frame, then row, then column), as `PatchEmbed3d` lays them out."""
    t, h, w = grid
    band = rope_band(head_dim)
    half = band // 2
    # The frequencies in float32, computed as the reference computes them (then multiplied by an
    # integer position), so the tables are the same float32 values.
    omega = torch.arange(half, dtype=torch.float32, device=device) / (band / 2.0)
    omega = 1.0 / 10000**omega  # (band/2,)
    ids = torch.arange(t * h * w, device=device)
    axes = (ids // (h * w), (ids % (h * w)) // w, ids % w)  # frame, row, column of each token
    cos = torch.ones(t * h * w, head_dim, dtype=torch.float32, device=device)
    sin = torch.zeros(t * h * w, head_dim, dtype=torch.float32, device=device)
    for i, pos in enumerate(axes):
        angle = pos.unsqueeze(-1) * omega  # (N, band/2)
        cos[:, i * band : (i + 1) * band] = angle.cos().repeat(1, 2)
        sin[:, i * band : (i + 1) * band] = angle.sin().repeat(1, 2)
    return torch.stack([cos, sin])


def apply_rope(x: Tensor, tables: Tensor) -> Tensor:
    """x (B, heads, N, head_dim) rotated pairwise by `tables` (2, N, head_dim) from `rope_tables`."""
    cos, sin = tables.to(x.dtype).unbind(0)  # each (N, head_dim)
    pairs = x.unflatten(-1, (-1, 2))  # (..., head_dim/2, 2)
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (-x1, x0, -x3, x2, ...)
    return x * cos + rotated * sin
