"""MViT: Multiscale Vision Transformers, as the pytorchvideo model zoo builds and trains them.

The clip is cut into 3x7x7 space-time patches (stride 2x4x4), a class token is prepended and
separable spatial/temporal position embeddings are added. A stack of transformer blocks follows in
which attention pools its queries, keys and values with learned depthwise 3D convolutions: pooling
the keys and values makes attention cheap on the long early sequences, and pooling the queries at
the start of a stage halves the spatial resolution while the channel width and head count double.
The classifier reads the final normalised class token.

The position embeddings are learned for one clip size, so the model accepts only that size
(`num_frames` x `crop_size` x `crop_size`): 16x224x224 for the published weights, also at test time.

Modules carry the names of the pytorchvideo checkpoint (`patch_embed.patch_model`,
`cls_positional_encoding`, `blocks.N.attn.pool_k`, `norm_embed`, `head.proj`, ...), so the official
`.pyth` file loads as is.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import WeightSource

Grid = tuple[int, int, int]  # (T, H, W) of the token grid, the class token not counted

# LayerNorm epsilon of the blocks and of the final norm; the norms after attention pooling keep
# PyTorch's default (1e-5), as in the reference.
_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    """A strided 3D convolution that turns the clip into a sequence of patch tokens."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.patch_model = nn.Conv3d(in_channels, dim, (3, 7, 7), stride=(2, 4, 4), padding=(1, 3, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Grid]:
        x = self.patch_model(x)  # (B, D, T/2, H/4, W/4)
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid  # (B, T*H*W, D)


class ClsPositionalEncoding(nn.Module):
    """Prepends the class token and adds one embedding per spatial and one per temporal position."""

    def __init__(self, dim: int, grid: Grid) -> None:
        super().__init__()
        t, h, w = grid
        self.grid = grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, dim))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, dim))
        self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        t = self.grid[0]
        hw = self.pos_embed_spatial.shape[1]
        # Token (t, s) gets spatial[s] + temporal[t]; tokens are ordered time-major.
        pos = self.pos_embed_spatial.repeat(1, t, 1) + self.pos_embed_temporal.repeat_interleave(hw, dim=1)
        pos = torch.cat([self.pos_embed_class, pos], dim=1)  # (1, 1+T*H*W, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + pos


def _pool_tokens(x: Tensor, pool: nn.Module, grid: Grid) -> tuple[Tensor, Grid]:
    """Pool the grid tokens of (B, heads, 1+L, C) over space-time; the class token passes as is."""
    b, heads, _, c = x.shape
    cls, tokens = x[:, :, :1], x[:, :, 1:]
    tokens = tokens.reshape(b * heads, *grid, c).permute(0, 4, 1, 2, 3)  # (B*heads, C, T, H, W)
    tokens = pool(tokens)
    new_grid = tuple(tokens.shape[2:])
    tokens = tokens.reshape(b, heads, c, -1).transpose(2, 3)  # (B, heads, L', C)
    return torch.cat([cls, tokens], dim=2), new_grid


class PooledAttention(nn.Module):
    """Multi-head self-attention whose queries, keys and values are pooled by depthwise convolutions.

    Each pooling convolution acts on one head's channels and is shared by all heads; a LayerNorm
    follows it. `q_stride` None leaves the queries (and so the output sequence) at full resolution.
    """

    def __init__(self, dim: int, num_heads: int, *, q_stride: Grid | None, kv_stride: Grid, kernel: Grid) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

        def pool(stride: Grid) -> nn.Conv3d:
            padding = tuple(k // 2 for k in kernel)
            return nn.Conv3d(head_dim, head_dim, kernel, stride=stride, padding=padding, groups=head_dim, bias=False)

        if q_stride is not None:
            self.pool_q = pool(q_stride)
            self.norm_q = nn.LayerNorm(head_dim)
        else:
            self.pool_q = self.norm_q = None
        self.pool_k = pool(kv_stride)
        self.norm_k = nn.LayerNorm(head_dim)
        self.pool_v = pool(kv_stride)
        self.norm_v = nn.LayerNorm(head_dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, heads, N, C/heads)

    def forward(self, x: Tensor, grid: Grid) -> tuple[Tensor, Grid]:
        b, _, c = x.shape
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        out_grid = grid
        if self.pool_q is not None:
            q, out_grid = _pool_tokens(q, self.pool_q, grid)
            q = self.norm_q(q)
        k = self.norm_k(_pool_tokens(k, self.pool_k, grid)[0])
        v = self.norm_v(_pool_tokens(v, self.pool_v, grid)[0])
        x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, heads, Nq, C/heads)
        x = x.transpose(1, 2).reshape(b, -1, c)
        return self.proj(x), out_grid


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dim_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of the batch."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device) < keep
        return x / keep * mask


class MultiscaleBlock(nn.Module):
    """Pre-norm transformer block with pooled attention.

    When the block pools its queries, the attention shortcut is max-pooled to the same grid. When
    the width changes (the last block of a stage), the MLP widens its output and the shortcut is
    the normalised input projected by `proj`.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        *,
        mlp_ratio: float,
        q_stride: Grid | None,
        kv_stride: Grid,
        kernel: Grid,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.attn = PooledAttention(dim, num_heads, q_stride=q_stride, kv_stride=kv_stride, kernel=kernel)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim_out)
        self.proj = nn.Linear(dim, dim_out) if dim_out != dim else None
        if q_stride is not None:
            skip_kernel = tuple(s + 1 if s > 1 else s for s in q_stride)
            self.pool_skip = nn.MaxPool3d(skip_kernel, q_stride, tuple(k // 2 for k in skip_kernel))
        else:
            self.pool_skip = None

    def forward(self, x: Tensor, grid: Grid) -> tuple[Tensor, Grid]:
        attn, new_grid = self.attn(self.norm1(x), grid)
        if self.pool_skip is not None:
            x = _pool_tokens(x.unsqueeze(1), self.pool_skip, grid)[0].squeeze(1)
        x = x + self.drop_path(attn)
        x_norm = self.norm2(x)
        shortcut = self.proj(x_norm) if self.proj is not None else x
        return shortcut + self.drop_path(self.mlp(x_norm)), new_grid


class MViT(VideoClassifier):
    """MViT-B for clips of `num_frames` x `crop_size` x `crop_size`.

    `stage_starts` are the blocks that begin a new stage: they pool their queries by 1x2x2, and the
    block before each doubles the width (and the head count doubles with it). Keys and values are
    pooled by `kv_stride` in the first stage, a stride divided by the query stride at each new stage.
    """

    classifier_name = "head.proj"
    native_formats = frozenset({"pyth", "videozoo", "safetensors"})
    # Learned position embeddings fix the clip size: no fully convolutional testing.
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
        self.num_frames = num_frames
        self.crop_size = crop_size
        q_stride = (1, 2, 2)

        self.patch_embed = PatchEmbed(3, width)
        grid = (num_frames // 2, crop_size // 4, crop_size // 4)
        self.cls_positional_encoding = ClsPositionalEncoding(width, grid)

        def doublings(i: int) -> int:
            return sum(s <= i for s in stage_starts)

        blocks = []
        stride_kv = kv_stride
        for i in range(depth):
            pools_q = i in stage_starts
            if pools_q:
                stride_kv = tuple(max(s // q, 1) for s, q in zip(stride_kv, q_stride, strict=True))
            blocks.append(
                MultiscaleBlock(
                    width * 2 ** doublings(i),
                    width * 2 ** doublings(i + 1),
                    num_heads * 2 ** doublings(i),
                    mlp_ratio=mlp_ratio,
                    q_stride=q_stride if pools_q else None,
                    kv_stride=stride_kv,
                    kernel=pool_kernel,
                    drop_path=drop_path * i / max(depth - 1, 1),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        dim = width * 2 ** doublings(depth)
        self.norm_embed = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.ModuleDict({"proj": nn.Linear(dim, num_classes)})
        self._init_weights()

    def _init_weights(self) -> None:
        # The reference draws these from a normal of std 0.02 truncated at +-2, i.e. at 100 std:
        # the same distribution as a plain normal, which is much faster to sample.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in self.cls_positional_encoding.parameters():
            nn.init.normal_(p, std=0.02)

    def layer_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward_positions(self, x: Tensor) -> Tensor:
        expected = (self.num_frames, self.crop_size, self.crop_size)
        if x.ndim != 5 or tuple(x.shape[2:]) != expected:
            got = "x".join(map(str, x.shape[2:])) if x.ndim == 5 else f"a tensor of shape {tuple(x.shape)}"
            raise ValueError(
                f"MViT takes clips of exactly {'x'.join(map(str, expected))} (frames x height x width), "
                f"the size its position embeddings were learned for; got {got}"
            )
        x, grid = self.patch_embed(x)
        x = self.cls_positional_encoding(x)  # (B, 1+T*H*W, D)
        for block in self.blocks:
            x, grid = block(x, grid)
        x = self.norm_embed(x)
        return x[:, :1]  # (B, 1, D): the class token


register(
    ModelSpec(
        name="mvit_base_16x4",
        family="mvit",
        cls=MViT,
        arch={"num_frames": 16, "crop_size": 224},
        input=InputConfig(
            num_frames=16,
            sampling_rate=4,
            fps=30,
            short_side=224,
            crop_size=224,
            train_crop_size=224,
            test_clips=5,
            test_crops=1,
        ),
        weights={
            "kinetics400": WeightSource(
                url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/MVIT_B_16x4.pyth",
                format="pyth",
                license="Apache-2.0",  # pytorchvideo's model zoo, under the repository's Apache 2.0 licence
            )
        },
        metrics=Metrics(
            top1=78.85,
            top5=93.85,
            gflops=70.80,
            params_m=36.61,
            views="5x1",
            source="pytorchvideo MODEL_ZOO.md (Kinetics-400)",
            flops_note="convolutions, linear layers and attention products make 70.60 G multiply-adds; "
            "the published count (fvcore) adds 5 per element for each LayerNorm, 0.20 G",
        ),
        description="MViT-B, 16 frames at stride 4, trained from scratch on Kinetics-400",
        paper="Fan et al., Multiscale Vision Transformers, ICCV 2021 (arXiv:2104.11227)",
    )
)
