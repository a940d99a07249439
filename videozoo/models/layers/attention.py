"""Multi-head self-attention with the bias layouts the published video transformers use."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.models.layers.rope import apply_rope


class Attention(nn.Module):
    """Self-attention over (B, N, D) tokens through `scaled_dot_product_attention`.

    One fused projection `qkv` (weight (3*D, D), rows q | k | v) computes queries, keys and values.
    bias:
    - "qkv": `qkv` has its own bias of 3*D values (TimeSformer, ViViT);
    - "qv": separate `q_bias` and `v_bias` parameters and no key bias (VideoMAE, BEiT): a key bias
      adds the same value to every score of a query, which the softmax cancels, so it is left out;
    - "none": no bias at all.
    """

    def __init__(self, dim: int, num_heads: int, *, bias: str = "qkv", dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not a multiple of the {num_heads} attention heads")
        if bias not in ("qkv", "qv", "none"):
            raise ValueError(f"attention bias must be 'qkv', 'qv' or 'none', got {bias!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias == "qkv")
        if bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_parameter("q_bias", None)
            self.register_parameter("v_bias", None)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def _qkv_bias(self) -> Tensor | None:
        if self.q_bias is None:
            return self.qkv.bias
        return torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])  # (3*D,)

    def forward(self, x: Tensor, mask: Tensor | None = None, rope: Tensor | None = None) -> Tensor:
        """x (B, N, D), or (B, W, N, D): W groups of N tokens (Swin's windows), each attended alone.

        mask: None, or additive scores, 0 where a query may attend a key and a large negative value
        where it may not (see `causal_mask`): (B or 1, 1 or heads, N, N) for (B, N, D) tokens; for
        groups, (1, heads, N, N) shared by every group or (W, heads, N, N), one per group.
        rope: None, or (2, N, head_dim) rotary tables (`rope_tables`) that rotate the queries and keys
        of (B, N, D) tokens.
        """
        if x.ndim == 4:
            if rope is not None:
                raise ValueError("Attention: rotary positions are for (B, N, D) tokens, not grouped ones")
            return self._grouped(x, mask)
        b, n, d = x.shape
        qkv = F.linear(x, self.qkv.weight, self._qkv_bias())  # (B, N, 3*D)
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        x = self._attend(q, k, v, mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))

    def _grouped(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, w, n, d = x.shape
        h = self.num_heads
        qkv = F.linear(x, self.qkv.weight, self._qkv_bias())  # (B, W, N, 3*D)
        qkv = qkv.reshape(b, w, n, 3, h, self.head_dim).permute(3, 0, 1, 4, 2, 5)  # (3, B, W, heads, N, hd)
        if mask is None or mask.shape[0] == 1:
            # One mask for every group: the groups are batch entries, (B*W, heads, N, hd).
            q, k, v = qkv.reshape(3, b * w, h, n, self.head_dim).unbind(0)
            out = self._attend(q, k, v, mask)
        else:
            # A mask per group: groups and heads share one axis, (B, W*heads, N, hd), so that the
            # (1, W*heads, N, N) mask broadcasts over the batch without a copy per clip.
            q, k, v = qkv.reshape(3, b, w * h, n, self.head_dim).unbind(0)
            out = self._attend(q, k, v, mask.expand(w, h, n, n).reshape(1, w * h, n, n))
        # (B, W, N, D). The copy is explicit: traced, the attention's output is laid out so that this
        # merge of the heads is a view, which fails once ONNX's export decomposes the masked attention.
        out = out.reshape(b, w, h, n, self.head_dim).transpose(2, 3).clone(memory_format=torch.contiguous_format)
        return self.proj(out.reshape(b, w, n, d))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        if mask is not None and mask.is_floating_point() and mask.dtype != q.dtype:
            mask = mask.to(q.dtype)  # an additive mask must be in the products' precision (bf16)
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)


class CrossAttention(nn.Module):
    """Queries from one token set attend to another: (B, Nq, D) x (B, Nk, D) -> (B, Nq, D).

    `q` projects the queries; one fused `kv` (weight (2*D, D), rows k | v) projects the keys and
    values from the same context tokens; `proj` maps the heads back. qkv_bias: whether `q` and `kv`
    have biases (`proj` always has one). out_proj False: no `proj`, the heads are concatenated as
    they are (V-JEPA 2's attentive pooler).
    """

    def __init__(
        self, dim: int, num_heads: int, *, qkv_bias: bool = True, out_proj: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not a multiple of the {num_heads} attention heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim) if out_proj else nn.Identity()
        self.dropout = dropout

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, n, d = x.shape
        m = context.shape[1]
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, Nq, hd)
        kv = self.kv(context).reshape(b, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)  # each (B, heads, Nk, hd)
        dropout = self.dropout if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


def causal_mask(length: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """(1, 1, L, L) additive mask: token i attends to tokens 0..i (a language model's left-to-right
    attention). The dtype's most negative value, not -inf, keeps a fully masked row finite."""
    neg = torch.finfo(dtype).min
    return torch.full((length, length), neg, dtype=dtype, device=device).triu(1)[None, None]
