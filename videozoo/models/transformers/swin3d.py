"""Video Swin Transformer (Swin3D T/S/B) as torchvision builds it, from torchvision's `.pth` files.

The clip is cut into 2x4x4 patches (padded up to a multiple of the patch), projected and
normalised, giving a (T, H, W) map of tokens. Four stages of pre-norm blocks follow; each block
attends within non-overlapping 8x7x7 windows of the map, every second block with the windows
shifted by half a window (the map is rolled, and a mask keeps tokens that the roll brought
together from attending each other). Attention adds a learned bias per head for each relative
offset inside a window, looked up in `relative_position_bias_table`. Between stages, patch merging
concatenates each 2x2 spatial neighbourhood (4C channels), normalises it and projects it to 2C:
half the resolution, twice the width. The classifier reads the normalised map averaged over
space and time.

Windows shrink to the map where the map is smaller (a window as large as the map is not shifted),
so the network takes any clip size; the published weights were trained on 32 frames at 224.

torchvision's files keep the module names of its model (`patch_embed.proj`, `features.N.M.attn.qkv`,
`features.N.reduction`, `norm`, `head`), which this model mirrors; the MLP's `mlp.0`/`mlp.3`
become the shared MLP's `fc1`/`fc2`. The files also hold each block's int64
`relative_position_index`, a constant of the window size: it is checked against the one computed
here, never taken as a weight.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.layers import Attention, DropPath, Mlp, PatchEmbed3d
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.errors import CheckpointError
from videozoo.weights.sources import TORCHVISION_TERMS, WeightSource

Size3 = tuple[int, int, int]  # (T, H, W)

# torchvision's Swin3D: every LayerNorm at PyTorch's default epsilon.
_NORM_EPS = 1e-5


def relative_position_index(window: Size3, *, device: torch.device | str = "cpu") -> Tensor:
    """(N, N) int64 for a window of N = t*h*w tokens (time-major): the row of the bias table that
    holds the bias of query i attending key j, one row per distinct 3D offset between them."""
    t, h, w = window
    coords = torch.stack(torch.meshgrid(*(torch.arange(n, device=device) for n in window), indexing="ij")).flatten(
        1
    )  # (3, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N): offsets in [-(n-1), n-1]
    rel = rel + torch.tensor([t - 1, h - 1, w - 1], device=device)[:, None, None]
    return rel[0] * (2 * h - 1) * (2 * w - 1) + rel[1] * (2 * w - 1) + rel[2]


def shift_mask(size: Size3, window: Size3, shift: Size3) -> Tensor:
    """(windows, N, N) additive mask of the shifted windows of a (T, H, W) map (a multiple of the
    window): -100 between tokens that came from different regions of the map before the roll."""
    region = torch.zeros(size)
    for i, (dt, dh, dw) in enumerate(
        itertools.product(*(((0, -n), (-n, -s), (-s, None)) for n, s in zip(window, shift, strict=True)))
    ):
        region[dt[0] : dt[1], dh[0] : dh[1], dw[0] : dw[1]] = i
    windows = _partition(region[None, ..., None], window).squeeze(-1)[0]  # (windows, N)
    diff = windows[:, None, :] - windows[:, :, None]  # (windows, N, N)
    return torch.where(diff != 0, -100.0, 0.0)


def _partition(x: Tensor, window: Size3) -> Tensor:
    """(B, T, H, W, C) -> (B, windows, N, C), windows in raster order, tokens time-major in each."""
    b, t, h, w, c = x.shape
    wt, wh, ww = window
    x = x.view(b, t // wt, wt, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, -1, wt * wh * ww, c)


def _merge(x: Tensor, window: Size3, size: Size3) -> Tensor:
    """The inverse of `_partition`: (B, windows, N, C) -> (B, T, H, W, C)."""
    b, _, _, c = x.shape
    (t, h, w), (wt, wh, ww) = size, window
    x = x.view(b, t // wt, h // wh, w // ww, wt, wh, ww, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, t, h, w, c)


class WindowAttention3d(Attention):
    """Multi-head self-attention within (shifted) 3D windows, with a relative position bias.

    The bias and the shift mask are passed to `scaled_dot_product_attention` as its additive mask.
    """

    def __init__(self, dim: int, num_heads: int, window: Size3, shift: Size3) -> None:
        super().__init__(dim, num_heads, bias="qkv")
        self.window, self.shift = window, shift
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(math.prod(2 * n - 1 for n in window), num_heads)
        )  # (offsets, heads)
        if not self.relative_position_bias_table.is_meta:
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # A constant of the window: computed (on the CPU even when the model is built on the meta
        # device to be filled from a file), never stored; files that hold it are checked against it.
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]  # (B, T, H, W, C) -> the same
        b, t, h, w, c = x.shape
        # A window no larger than the map; no shift where the window covers the map.
        window = tuple(min(n, s) for n, s in zip(self.window, (t, h, w), strict=True))
        shift = tuple(0 if s <= n else k for n, s, k in zip(self.window, (t, h, w), self.shift, strict=True))
        pad = [(-s) % n for s, n in zip((t, h, w), window, strict=True)]
        x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        size = (t + pad[0], h + pad[1], w + pad[2])
        if any(shift):
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        # The bias of a smaller window reads the top-left block of the full window's index, as the
        # reference does (not the index of the smaller window).
        n = math.prod(window)
        index = self.relative_position_index.to(self.relative_position_bias_table.device)[:n, :n]
        bias = self.relative_position_bias_table[index.flatten()].view(n, n, -1).permute(2, 0, 1)  # (heads, N, N)
        mask = bias.unsqueeze(0)  # (1, heads, N, N): the same for every window
        if any(shift):
            mask = mask + shift_mask(size, window, shift).to(bias)[:, None]  # (windows, heads, N, N)
        out = super().forward(_partition(x, window), mask)  # (B, windows, N, C)
        x = _merge(out, window, size)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
        return x[:, :t, :h, :w]


class SwinBlock(nn.Module):
    def __init__(
        self, dim: int, num_heads: int, window: Size3, shift: Size3, *, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.attn = WindowAttention3d(dim, num_heads, window, shift)
        self.norm2 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, H, W, C)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """(B, T, H, W, C) -> (B, T, H/2, W/2, 2C): each 2x2 neighbourhood concatenated, normalised, projected."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=_NORM_EPS)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:4]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order of the reference: (even row, even col), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinPatchEmbed(PatchEmbed3d):
    """Non-overlapping patches, the clip padded up to a multiple of the patch; then a LayerNorm."""

    def __init__(self, dim: int, patch: Size3) -> None:
        super().__init__(3, dim, patch)
        self.norm = nn.LayerNorm(dim, eps=_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, T, H, W) -> (B, T', H', W', D)
        pad = [(-s) % p for s, p in zip(x.shape[2:], self.tubelet, strict=True)]
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        return self.norm(self.proj(x).permute(0, 2, 3, 4, 1))


class SwinTransformer3d(VideoClassifier):
    """Swin3D: `depths` blocks per stage, width `dim` doubling at each stage, `num_heads` per stage."""

    classifier_name = "head"
    native_formats = frozenset({"videozoo", "safetensors", "torchvision"})

    def __init__(
        self,
        *,
        num_classes: int = 400,
        dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        patch: Size3 = (2, 4, 4),
        window: Size3 = (8, 7, 7),
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"{len(depths)} stage depths but {len(num_heads)} head counts")
        window, patch = tuple(window), tuple(patch)
        self.patch_embed = SwinPatchEmbed(dim, patch)
        total = sum(depths)
        layers: list[nn.Module] = []
        done = 0
        for stage, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            width = dim * 2**stage
            blocks = []
            for i in range(depth):
                shift = (0, 0, 0) if i % 2 == 0 else tuple(n // 2 for n in window)
                rate = drop_path * done / max(total - 1, 1)  # stochastic depth grows linearly with depth
                blocks.append(SwinBlock(width, heads, window, shift, mlp_ratio=mlp_ratio, drop_path=rate))
                done += 1
            layers.append(nn.Sequential(*blocks))
            if stage < len(depths) - 1:
                layers.append(PatchMerging(width))
        self.features = nn.Sequential(*layers)
        width = dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(width, eps=_NORM_EPS)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def layer_blocks(self) -> list[nn.Module]:
        # Numbered across the stages; each patch merging shares the layer of the block before it.
        return [m for m in self.features.modules() if isinstance(m, SwinBlock)]

    def forward_positions(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"Swin3D takes (B, 3, T, H, W) clips; got a tensor of shape {tuple(x.shape)}")
        x = self.features(self.patch_embed(x))  # (B, T', H', W', C)
        return self.norm(x).mean(dim=(1, 2, 3)).unsqueeze(1)  # (B, 1, C)

    # -- torchvision's files ---------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        if fmt not in cls.native_formats:
            return super().convert_checkpoint(fmt, state, source=source)
        out = {}
        for key, value in state.items():
            if key.endswith(".attn.relative_position_index"):
                _check_index(key, value, state, source)
                continue
            # torchvision's MLP is a Sequential: Linear (0), GELU, Dropout, Linear (3), Dropout.
            out[re.sub(r"\.mlp\.0\.", ".mlp.fc1.", re.sub(r"\.mlp\.3\.", ".mlp.fc2.", key))] = value
        return out


def _check_index(key: str, index: Tensor, state: dict[str, Tensor], source: str) -> None:
    """A file's `relative_position_index` must be the one of its block's window, which the shape of
    the block's bias table and the index's size determine."""
    table = state.get(key.replace("relative_position_index", "relative_position_bias_table"))
    n = index.shape[0] if index.ndim == 2 and index.shape[0] == index.shape[1] else 0
    windows = [] if table is None else _windows_of(n, table.shape[0])
    if not any(torch.equal(index.long(), relative_position_index(w)) for w in windows):
        raise CheckpointError(
            f"{source}: {key} is not the relative position index of a 3D window of "
            f"{'its block' if table is not None else 'any block (no bias table beside it)'}; "
            "it is a constant of the window size, and a file whose index differs was not written by Swin3D"
        )


def _windows_of(tokens: int, offsets: int) -> list[Size3]:
    """The (t, h, w) windows of `tokens` tokens whose relative offsets number `offsets`."""
    found = []
    for t in range(1, tokens + 1):
        for h in range(1, tokens // t + 1):
            w, rest = divmod(tokens, t * h)
            if not rest and (2 * t - 1) * (2 * h - 1) * (2 * w - 1) == offsets:
                found.append((t, h, w))
    return found


# -- the registry --------------------------------------------------------------------------------

# torchvision's Swin3D weights: ImageNet's mean and std, a short side of 256 and a centre crop of 224.
_INPUT = InputConfig(
    num_frames=32,
    sampling_rate=1,
    fps=15.0,
    short_side=256,
    crop_size=224,
    train_crop_size=224,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    # torchvision's figures: 12 clips of 32 consecutive frames at 15 fps per video, one centre crop.
    test_clips=12,
    test_crops=1,
    clip_spacing="torchvision",
)
_PAPER = "Liu et al., Video Swin Transformer, CVPR 2022 (arXiv:2106.13230)"
_SOURCE = (
    "torchvision 0.28 {}.{} metadata (weights ported from the paper; video-level accuracy with "
    "frame_rate=15, clips_per_video=12, clip_len=32)"
)

_SIZES: dict[str, dict[str, Any]] = {
    "t": {"dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "s": {"dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "b": {"dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
}

# (name, size, file, weights enum, enum member, top-1, top-5, published GFLOPs, params (M), pre-training)
_VARIANTS = (
    ("swin3d_t", "t", "swin3d_t-7615ae03", "Swin3D_T_Weights", "KINETICS400_V1", 77.715, 93.519, 43.882, 28.16, "ImageNet-1K"),
    ("swin3d_s", "s", "swin3d_s-da41c237", "Swin3D_S_Weights", "KINETICS400_V1", 79.521, 94.158, 82.841, 49.82, "ImageNet-1K"),
    ("swin3d_b", "b", "swin3d_b_1k-24f7c7c6", "Swin3D_B_Weights", "KINETICS400_V1", 79.427, 94.386, 140.667, 88.05, "ImageNet-1K"),
    ("swin3d_b_in22k", "b", "swin3d_b_22k-7c6ae6fa", "Swin3D_B_Weights", "KINETICS400_IMAGENET22K_V1", 81.643, 95.574, 140.667, 88.05, "ImageNet-22K"),
)  # fmt: skip

for _name, _size, _file, _enum, _member, _top1, _top5, _gflops, _params, _pretrain in _VARIANTS:
    register(
        ModelSpec(
            name=_name,
            family="swin3d",
            cls=SwinTransformer3d,
            arch=_SIZES[_size],
            input=_INPUT,
            weights={
                "kinetics400": WeightSource(
                    url=f"https://download.pytorch.org/models/{_file}.pth",
                    format="torchvision",
                    sha256_prefix=_file.rsplit("-", 1)[1],
                    license=TORCHVISION_TERMS,
                )
            },
            metrics=Metrics(
                top1=_top1,
                top5=_top5,
                gflops=_gflops,
                params_m=_params,
                views="12x1",
                source=_SOURCE.format(_enum, _member),
                flops_note=f"torchvision publishes {_gflops} GFLOPs for a 16-frame clip; the 32-frame "
                "clip of its accuracy figures takes twice that",
            ),
            description=f"Video Swin-{_size.upper()}, 32 frames, from {_pretrain} image weights, trained on Kinetics-400",
            paper=_PAPER,
        )
    )
