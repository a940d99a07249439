"""Position tables: learned (one vector per token) and the fixed sine-cosine table."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def sincos_table(length: int, dim: int, *, device: torch.device | str = "cpu") -> Tensor:
    """(length, dim) float32: the Transformer's fixed 1D table, sine and cosine interleaved.

    Channel 2i of position p is sin(p / 10000^(2i/dim)) and channel 2i+1 is cos of the same angle
    (VideoMAE's layout: interleaved, not the two halves of MAE's 2D table). Computed in float64 and
    rounded once, so the table is the same float32 values as the references'. The device is
    explicit so that a model built on the meta device still gets real values.
    """
    pos = torch.arange(length, dtype=torch.float64, device=device)[:, None]  # (L, 1)
    pair = torch.arange(dim, dtype=torch.float64, device=device) // 2  # channel j uses frequency j // 2
    base = torch.tensor(10000.0, dtype=torch.float64, device=device)
    angle = pos / torch.pow(base, 2 * pair / dim)  # (L, dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = angle[:, 0::2].sin()
    table[:, 1::2] = angle[:, 1::2].cos()
    return table.to(torch.float32)


class LearnedPositions(nn.Module):
    """A learned (1, N, D) table added to the tokens; fixed length, so a fixed clip size."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, length, dim))
        if not self.weight.is_meta:  # built on meta to be filled from a checkpoint: nothing to draw
            nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D)
        if x.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"{x.shape[1]} tokens, but the learned position table holds {self.weight.shape[1]}: "
                "the model takes only the clip size it was trained at"
            )
        return x + self.weight
