"""The pre-norm transformer block of ViT: x + attn(norm1(x)), then x + mlp(norm2(x))."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from videozoo.models.layers.attention import Attention
from videozoo.models.layers.drop_path import DropPath
from videozoo.models.layers.mlp import Mlp


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden: int,
        *,
        attn_bias: str = "qkv",
        act: str = "gelu",
        norm_eps: float = 1e-6,
        drop_path: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, bias=attn_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, act=act, dropout=dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor | None = None, rope: Tensor | None = None) -> Tensor:
        # (B, N, D) -> (B, N, D). mask: an additive attention mask (see Attention.forward), e.g.
        # `causal_mask` for text; rope: rotary tables for the queries and keys (`rope_tables`).
        x = x + self.drop_path(self.attn(self.norm1(x), mask, rope))
        return x + self.drop_path(self.mlp(self.norm2(x)))
