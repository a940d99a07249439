"""MViTv2: improved Multiscale Vision Transformers, as torchvision builds them, from its `.pth` files.

Like MViT (videozoo/models/mvit.py, the pytorchvideo network), the clip is cut into overlapping
3x7x7 space-time patches (stride 2x4x4) with a class token in front, and every block's attention
pools its queries, keys and values with depthwise 3D convolutions (one per head channel, shared by
the heads), each followed by a LayerNorm. What MViTv2 changes:
- no absolute position embedding: attention adds a decomposed relative position bias, the sum of
  a learned vector per time, row and column offset between query and key (`rel_pos_t/h/w`),
  each multiplied with the query;
- residual pooling: the pooled query is added to the attention output (not to the class token's);
- the width doubles inside attention at the first block of a stage (its `qkv` projects to the
  new width), and the block's shortcut is the normalised input projected by `project` and
  max-pooled to the new grid.
The classifier reads the final normalised class token.

The relative position tables are sized for one clip (the reference derives the token grid from
the size it was built for, never from the clip), so the model takes exactly `num_frames` x
`crop_size` x `crop_size`: 16x224x224 for the published weights.

torchvision's key names are kept (`conv_proj`, `pos_encoding.class_token`,
`blocks.N.attn.{qkv,rel_pos_h,pool_q.pool,...}`, `blocks.N.project`, `norm`), except where the
shared blocks or plain names replace its Sequentials: `mlp.0`/`mlp.3` are the MLP's `fc1`/`fc2`,
`attn.project.0` is `attn.proj`, `pool_x.norm_act.0` is `pool_x.norm` and `head.1` is `head`.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.data.input_config import KINETICS_MEAN, KINETICS_STD, InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.layers import DropPath, Mlp
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import TORCHVISION_TERMS, WeightSource

Grid = tuple[int, int, int]  # (T, H, W) of the token grid, the class token not counted

_NORM_EPS = 1e-6  # every LayerNorm of torchvision's MViT, the pooling norms included


class Pool(nn.Module):
    """Pools the grid tokens of (B, heads, 1+L, C) over space-time, then normalises every token;
    the class token is not pooled. `norm` False: pooling alone (the block's max-pooled shortcut)."""

    def __init__(self, pool: nn.Module, dim: int | None) -> None:
        super().__init__()
        self.pool = pool
        self.norm = nn.LayerNorm(dim, eps=_NORM_EPS) if dim is not None else None

    def forward(self, x: Tensor, grid: Grid) -> tuple[Tensor, Grid]:
        b, heads, _, c = x.shape
        cls, tokens = x[:, :, :1], x[:, :, 1:]
        tokens = tokens.transpose(2, 3).reshape(b * heads, c, *grid)  # (B*heads, C, T, H, W)
        tokens = self.pool(tokens)
        new_grid = (int(tokens.shape[2]), int(tokens.shape[3]), int(tokens.shape[4]))
        x = torch.cat([cls, tokens.reshape(b, heads, c, -1).transpose(2, 3)], dim=2)  # (B, heads, 1+L', C)
        return (self.norm(x) if self.norm is not None else x), new_grid


def _conv_pool(head_dim: int, kernel: Grid, stride: Grid) -> nn.Conv3d:
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(head_dim, head_dim, kernel, stride=stride, padding=padding, groups=head_dim, bias=False)


def _offsets(q: int, k: int, device: torch.device) -> Tensor:
    """(q, k) int64: the row of a relative position table for query i and key j along one axis.

    Where queries and keys have different resolutions, both are put on the finer one's scale.
    """
    q_ratio, k_ratio = max(k / q, 1.0), max(q / k, 1.0)
    qs = torch.arange(q, device=device)[:, None] * q_ratio
    ks = (torch.arange(k, device=device)[None, :] + (1.0 - k)) * k_ratio
    return (qs - ks).long()


def _resized(table: Tensor, length: int) -> Tensor:
    """The (offsets, C) table linearly resampled to `length` offsets where a pooled grid's size is not
    the one the table was made for (a grid side that the stride does not divide), as the reference does."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t().unsqueeze(0), size=length, mode="linear").squeeze(0).t()


def relative_position_bias(q: Tensor, q_grid: Grid, k_grid: Grid, tables: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """(B, heads, 1+Lq, 1+Lk) additive attention scores of MViTv2's decomposed relative positions.

    q (B, heads, 1+Lq, C), unscaled; tables: rel_pos_t, rel_pos_h, rel_pos_w, each (offsets, C).
    Score (i, j) = q_i . (R_t[ti - tj] + R_h[hi - hj] + R_w[wi - wj]); the class token's row and
    column stay 0.
    """
    b, heads, _, c = q.shape
    rt, rh, rw = (
        _resized(table, 2 * max(qn, kn) - 1)[_offsets(qn, kn, q.device)]
        for table, qn, kn in zip(tables, q_grid, k_grid, strict=True)
    )  # each (q, k, C)
    r_q = q[:, :, 1:].reshape(b, heads, *q_grid, c)  # (B, heads, qt, qh, qw, C)
    rel_t = torch.einsum("bnthwc,tkc->bnthwk", r_q, rt)  # (B, heads, qt, qh, qw, kt)
    rel_h = torch.einsum("bnthwc,hkc->bnthwk", r_q, rh)
    rel_w = torch.einsum("bnthwc,wkc->bnthwk", r_q, rw)
    rel = rel_t[..., :, None, None] + rel_h[..., None, :, None] + rel_w[..., None, None, :]
    rel = rel.reshape(b, heads, r_q.shape[2] * r_q.shape[3] * r_q.shape[4], -1)  # (B, heads, Lq, Lk)
    return F.pad(rel, (1, 0, 1, 0))


class MultiscaleAttention(nn.Module):
    """Pooled multi-head attention with relative position bias and residual pooling.

    (B, 1+L, dim) on `grid` -> (B, 1+L', dim_out) on the grid pooled by `q_stride`.
    """

    def __init__(
        self, dim: int, dim_out: int, num_heads: int, *, grid: Grid, q_stride: Grid, kv_stride: Grid, kernel: Grid
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim_out // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)
        # Every block pools its queries and its keys and values (kernel 3, stride 1 or more).
        self.pool_q = Pool(_conv_pool(head_dim, kernel, q_stride), head_dim)
        self.pool_k = Pool(_conv_pool(head_dim, kernel, kv_stride), head_dim)
        self.pool_v = Pool(_conv_pool(head_dim, kernel, kv_stride), head_dim)
        # One table entry per offset between the query and key positions of this block's grids.
        size = max(grid[1:])
        spatial = 2 * max(size // q_stride[1], size // kv_stride[1]) - 1
        self.rel_pos_h = nn.Parameter(torch.zeros(spatial, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(spatial, head_dim))
        self.rel_pos_t = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))

    def forward(self, x: Tensor, grid: Grid) -> tuple[Tensor, Grid]:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, 1+L, head_dim)
        k, k_grid = self.pool_k(k, grid)
        v, _ = self.pool_v(v, grid)
        q, q_grid = self.pool_q(q, grid)
        bias = relative_position_bias(q, q_grid, k_grid, (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # (B, heads, 1+L', hd)
        # Residual pooling: the pooled queries join the output, the class token's excepted.
        out = torch.cat([out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]], dim=2)
        return self.proj(out.transpose(1, 2).reshape(b, out.shape[2], -1)), q_grid


class MultiscaleBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        *,
        grid: Grid,
        q_stride: Grid,
        kv_stride: Grid,
        kernel: Grid,
        mlp_ratio: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.attn = MultiscaleAttention(
            dim, dim_out, num_heads, grid=grid, q_stride=q_stride, kv_stride=kv_stride, kernel=kernel
        )
        self.norm2 = nn.LayerNorm(dim_out, eps=_NORM_EPS)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self.project = nn.Linear(dim, dim_out) if dim_out != dim else None
        if any(s > 1 for s in q_stride):
            skip = tuple(s + 1 if s > 1 else s for s in q_stride)
            self.pool_skip: Pool | None = Pool(nn.MaxPool3d(skip, q_stride, tuple(k // 2 for k in skip)), None)
        else:
            self.pool_skip = None

    def forward(self, x: Tensor, grid: Grid) -> tuple[Tensor, Grid]:  # (B, 1+L, dim) -> (B, 1+L', dim_out)
        x_norm = self.norm1(x)
        attn, new_grid = self.attn(x_norm, grid)
        shortcut = self.project(x_norm) if self.project is not None else x
        if self.pool_skip is not None:
            shortcut = self.pool_skip(shortcut.unsqueeze(1), grid)[0].squeeze(1)
        x = shortcut + self.drop_path(attn)
        return x + self.drop_path(self.mlp(self.norm2(x))), new_grid


class MViTv2(VideoClassifier):
    """MViTv2 for clips of `num_frames` x `crop_size` x `crop_size`.

    `stage_starts` are the blocks that begin a new stage: they pool their queries by 1x2x2 and
    double the width and the head count. Keys and values are pooled by `kv_stride` in the first
    stage, a stride divided by the query stride at each new stage.
    """

    classifier_name = "head"
    native_formats = frozenset({"videozoo", "safetensors", "torchvision"})
    # Relative position tables sized for one token grid: no other clip size.
    fixed_input_size = True

    def __init__(
        self,
        *,
        num_classes: int = 400,
        num_frames: int = 16,
        crop_size: int = 224,
        depth: int = 16,
        width: int = 96,
        num_heads: int = 1,
        stage_starts: tuple[int, ...] = (1, 3, 14),
        mlp_ratio: float = 4.0,
        kv_stride: Grid = (1, 8, 8),
        pool_kernel: Grid = (3, 3, 3),
        dropout: float = 0.5,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_frames, self.crop_size = num_frames, crop_size
        self.conv_proj = nn.Conv3d(3, width, (3, 7, 7), stride=(2, 4, 4), padding=(1, 3, 3))
        self.cls_token = nn.Parameter(torch.zeros(width))
        grid = (num_frames // 2, crop_size // 4, crop_size // 4)
        q_pool = (1, 2, 2)
        blocks = []
        dim, heads, stride_kv = width, num_heads, tuple(kv_stride)
        for i in range(depth):
            starts = i in stage_starts
            if starts:
                stride_kv = tuple(max(s // q, 1) for s, q in zip(stride_kv, q_pool, strict=True))
            dim_out, heads = (2 * dim, 2 * heads) if starts else (dim, heads)
            q_stride = q_pool if starts else (1, 1, 1)
            blocks.append(
                MultiscaleBlock(
                    dim,
                    dim_out,
                    heads,
                    grid=grid,
                    q_stride=q_stride,
                    kv_stride=stride_kv,
                    kernel=tuple(pool_kernel),
                    mlp_ratio=mlp_ratio,
                    drop_path=drop_path * i / max(depth - 1, 1),
                )
            )
            grid = tuple(g // s for g, s in zip(grid, q_stride, strict=True))
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, MultiscaleAttention):
                for table in (m.rel_pos_h, m.rel_pos_w, m.rel_pos_t):
                    nn.init.trunc_normal_(table, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def layer_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward_positions(self, x: Tensor) -> Tensor:
        expected = (self.num_frames, self.crop_size, self.crop_size)
        if x.ndim != 5 or tuple(x.shape[2:]) != expected:
            got = "x".join(map(str, x.shape[2:])) if x.ndim == 5 else f"a tensor of shape {tuple(x.shape)}"
            raise ValueError(
                f"MViTv2 takes clips of exactly {'x'.join(map(str, expected))} (frames x height x width), "
                f"the size its relative position tables were made for; got {got}"
            )
        x = self.conv_proj(x)  # (B, D, T/2, H/4, W/4)
        grid = (int(x.shape[2]), int(x.shape[3]), int(x.shape[4]))
        x = x.flatten(2).transpose(1, 2)  # (B, L, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], dim=1)  # (B, 1+L, D)
        for block in self.blocks:
            x, grid = block(x, grid)
        return self.norm(x[:, :1])  # (B, 1, D): the class token

    # -- torchvision's files ---------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        if fmt not in cls.native_formats:
            return super().convert_checkpoint(fmt, state, source=source)
        out = {}
        for key, value in state.items():
            for pattern, name in _FROM_TORCHVISION:
                key = re.sub(pattern, name, key)
            out[key] = value
        return out


# torchvision's names -> this model's; keys of no known place keep their names (then listed as unexpected).
_FROM_TORCHVISION = (
    (r"^pos_encoding\.class_token$", "cls_token"),
    (r"\.mlp\.0\.", ".mlp.fc1."),
    (r"\.mlp\.3\.", ".mlp.fc2."),
    (r"\.attn\.project\.0\.", ".attn.proj."),
    (r"\.norm_act\.0\.", ".norm."),
    (r"^head\.1\.", "head."),
)


register(
    ModelSpec(
        name="mvit_v2_s",
        family="mvit_v2",
        cls=MViTv2,
        arch={"num_frames": 16, "crop_size": 224},
        input=InputConfig(
            num_frames=16,
            sampling_rate=1,
            fps=7.5,
            short_side=256,
            crop_size=224,
            train_crop_size=224,
            mean=KINETICS_MEAN,
            std=KINETICS_STD,
            # torchvision's figures: 5 clips of 16 consecutive frames at 7.5 fps per video, one centre crop.
            test_clips=5,
            test_crops=1,
            clip_spacing="torchvision",
        ),
        weights={
            "kinetics400": WeightSource(
                url="https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth",
                format="torchvision",
                sha256_prefix="ae3be167",
                license=TORCHVISION_TERMS,
            )
        },
        metrics=Metrics(
            top1=80.757,
            top5=94.665,
            gflops=64.224,
            params_m=34.54,
            views="5x1",
            source="torchvision 0.28 MViT_V2_S_Weights.KINETICS400_V1 metadata (weights ported from the paper; "
            "video-level accuracy with frame_rate=7.5, clips_per_video=5, clip_len=16)",
        ),
        description="MViTv2-S, 16 frames, trained from scratch on Kinetics-400",
        paper="Li et al., MViTv2: Improved Multiscale Vision Transformers for Classification and Detection, "
        "CVPR 2022 (arXiv:2112.01526)",
    )
)
