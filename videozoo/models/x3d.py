"""X3D: a small ResNet widened and deepened along chosen axes (Feichtenhofer, CVPR 2020).

Every stage halves the spatial size and keeps the frame count: a 1x1x1 -> depthwise 3x3x3 ->
1x1x1 bottleneck with Swish after the depthwise conv and squeeze-excitation on every other block.
The head widens the last map with a 1x1x1 conv, average-pools it with the window of the training
crop, and lifts the pooled vector to 2048 channels before the classifier. At a larger test crop
that window slides with stride 1 and the per-position scores are averaged.

The module tree follows pytorchvideo's `create_x3d`, so its model-zoo `.pyth` files load as is.
"""

from __future__ import annotations

import math

import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier, init_fresh_weights, positions_from_map
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import WeightSource

# Stage layout before the depth and width multipliers are applied.
_BASE_DEPTHS = (1, 2, 5, 3)
_STEM_WIDTH = 12
# The stem and every stage halve the spatial size; no layer strides in time.
_SPATIAL_STRIDE = 2**5


def _round_channels(width: float, multiplier: float, divisor: int = 8) -> int:
    """`width * multiplier` rounded to a multiple of `divisor`, never below it, nor 10% under."""
    scaled = width * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _batch_norm(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class _StemConv(nn.Module):
    """A 1x3x3 conv at stride 2 followed by a depthwise 5x1x1 conv.

    The checkpoint names them the other way round: `conv_t` holds the spatial kernel and
    `conv_xy` the temporal one.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_t = nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_xy = nn.Conv3d(
            out_channels, out_channels, (5, 1, 1), padding=(2, 0, 0), groups=out_channels, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_xy(self.conv_t(x))


class X3DStem(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _StemConv(in_channels, out_channels)
        self.norm = _batch_norm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class SqueezeExcitation(nn.Module):
    """Rescale each channel by a gate computed from the clip-wide channel means."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, 1),
            nn.ReLU(inplace=True),
            nn.Conv3d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class X3DBottleneck(nn.Module):
    def __init__(
        self, in_channels: int, inner: int, out_channels: int, *, stride: int, se_channels: int | None
    ) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(in_channels, inner, 1, bias=False)
        self.norm_a = _batch_norm(inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False)
        # The squeeze-excitation sits after the norm, inside the same container (`norm_b.1`).
        se = SqueezeExcitation(inner, se_channels) if se_channels else nn.Identity()
        self.norm_b = nn.Sequential(_batch_norm(inner), se)
        self.act_b = nn.SiLU()  # Swish
        self.conv_c = nn.Conv3d(inner, out_channels, 1, bias=False)
        self.norm_c = _batch_norm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class X3DBlock(nn.Module):
    """Residual unit; the shortcut is a strided 1x1x1 conv when the shape changes.

    The shortcut conv has a norm only when the width changes (the first stage keeps the stem's
    width, so its first block has a bare strided conv), as in the reference.
    """

    def __init__(
        self, in_channels: int, inner: int, out_channels: int, *, stride: int, se_channels: int | None
    ) -> None:
        super().__init__()
        self.branch1_conv = None
        self.branch1_norm = None
        if in_channels != out_channels or stride > 1:
            self.branch1_conv = nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False)
        if in_channels != out_channels:
            self.branch1_norm = _batch_norm(out_channels)
        self.branch2 = X3DBottleneck(in_channels, inner, out_channels, stride=stride, se_channels=se_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
        if self.branch1_norm is not None:
            shortcut = self.branch1_norm(shortcut)
        out = self.branch2(x)
        out += shortcut  # in place: no second block-sized tensor
        return self.activation(out)


class X3DStage(nn.Module):
    def __init__(self, depth: int, in_channels: int, inner: int, out_channels: int, *, se_ratio: float) -> None:
        super().__init__()
        se_channels = _round_channels(inner, se_ratio) if se_ratio > 0 else None
        self.res_blocks = nn.ModuleList(
            X3DBlock(
                in_channels if i == 0 else out_channels,
                inner,
                out_channels,
                stride=2 if i == 0 else 1,
                # blocks 0, 2, 4, ... carry the squeeze-excitation
                se_channels=se_channels if i % 2 == 0 else None,
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class ProjectedPool(nn.Module):
    """1x1x1 conv + BN + ReLU, average pool with the training window, 1x1x1 conv + ReLU."""

    def __init__(self, in_channels: int, inner: int, out_channels: int) -> None:
        super().__init__()
        self.pre_conv = nn.Conv3d(in_channels, inner, 1, bias=False)
        self.pre_norm = _batch_norm(inner)
        self.pre_act = nn.ReLU(inplace=True)
        self.post_conv = nn.Conv3d(inner, out_channels, 1, bias=False)
        self.post_act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, window: tuple[int, int, int]) -> Tensor:
        x = self.pre_act(self.pre_norm(self.pre_conv(x)))
        pooled = positions_from_map(x, window)  # (B, P, inner)
        # The 1x1x1 conv acts on each position alone: lay the P positions along time.
        x = self.post_conv(pooled.transpose(1, 2)[..., None, None])  # (B, out, P, 1, 1)
        return self.post_act(x).flatten(2).transpose(1, 2)  # (B, P, out)


class X3DHead(nn.Module):
    """Holds the head's layers; `X3D.forward_positions` runs the pool, the base class `proj`."""

    def __init__(self, in_channels: int, inner: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.pool = ProjectedPool(in_channels, inner, width)
        self.proj = nn.Linear(width, num_classes)


class X3D(VideoClassifier):
    """X3D for clips of shape (B, 3, T, H, W).

    `num_frames` and `crop_size` are the training clip's length and crop: they fix the head's
    pooling window (all T frames, ceil(crop_size / 32) squared), which slides over larger inputs.
    """

    classifier_name = "blocks.5.proj"
    native_formats = frozenset({"pyth", "videozoo", "safetensors"})

    def __init__(
        self,
        *,
        num_frames: int,
        crop_size: int,
        depth_factor: float = 2.2,
        width_factor: float = 2.0,
        bottleneck_factor: float = 2.25,
        se_ratio: float = 0.0625,
        head_width: int = 2048,
        dropout: float = 0.5,
        num_classes: int = 400,
    ) -> None:
        super().__init__()
        stem_width = _round_channels(_STEM_WIDTH, width_factor)
        blocks: list[nn.Module] = [X3DStem(3, stem_width)]

        in_channels, base_width = stem_width, _STEM_WIDTH
        for i, base_depth in enumerate(_BASE_DEPTHS):
            if i > 0:
                base_width = _round_channels(base_width, 2.0)
            out_channels = _round_channels(base_width, width_factor)
            inner = int(bottleneck_factor * out_channels)
            depth = math.ceil(depth_factor * base_depth)
            blocks.append(X3DStage(depth, in_channels, inner, out_channels, se_ratio=se_ratio))
            in_channels = out_channels

        # The head widens to the last stage's bottleneck width before pooling.
        blocks.append(X3DHead(in_channels, inner, head_width, num_classes))
        self.blocks = nn.ModuleList(blocks)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None

        side = math.ceil(crop_size / _SPATIAL_STRIDE)
        self.head_window = (num_frames, side, side)
        init_fresh_weights(self)  # as pytorchvideo initialises a fresh X3D

    def forward_positions(self, x: Tensor) -> Tensor:
        *body, head = self.blocks
        for block in body:
            x = block(x)  # ends at (B, C, T, H/32, W/32)
        return head.pool(x, self.head_window)  # (B, P, head_width)


# -- variants ---------------------------------------------------------------------------------

_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"
# pytorchvideo publishes its model zoo under the repository's licence (README: "released under the Apache 2.0 License").
_LICENSE = "Apache-2.0"
_PAPER = "Feichtenhofer. X3D: Expanding Architectures for Efficient Video Recognition. CVPR 2020 (arXiv:2004.04730)"
_SOURCE = "pytorchvideo docs/source/model_zoo.md (Kinetics-400; 3 spatial crops x 10 clips)"


def _register(
    name: str,
    size: str,
    *,
    frames: int,
    rate: int,
    train_crop: int,
    test_crop: int,
    jitter: tuple[int, int],
    depth_factor: float,
    top1: float,
    top5: float,
    gflops: float,
    fvcore_gflops: float,
    params_m: float,
) -> None:
    register(
        ModelSpec(
            name=name,
            family="x3d",
            cls=X3D,
            arch={"num_frames": frames, "crop_size": train_crop, "depth_factor": depth_factor},
            input=InputConfig(
                num_frames=frames,
                sampling_rate=rate,
                fps=30,
                short_side=test_crop,
                crop_size=test_crop,
                train_crop_size=train_crop,
                train_jitter=jitter,
                test_clips=10,
                test_crops=3,
            ),
            weights={"kinetics400": WeightSource(url=f"{_ZOO}/X3D_{size}.pyth", format="pyth", license=_LICENSE)},
            metrics=Metrics(
                top1=top1,
                top5=top5,
                gflops=gflops,
                params_m=params_m,
                views="10x3",
                source=_SOURCE,
                flops_note=(
                    f"published for one {frames}x{test_crop}x{test_crop} test view; fvcore's "
                    f"FlopCountAnalysis gives {fvcore_gflops:.2f} for that view"
                ),
            ),
            description=f"X3D-{size}, {frames}x{rate} clips, trained on Kinetics-400 at {train_crop}px",
            paper=_PAPER,
        )
    )


# Frames, sampling rate, crops and jitter as in PySlowFast's configs/Kinetics/X3D_*.yaml (the
# zoo's figures come from the PySlowFast workflow); the test crop is the short side, 3 crops.
_register(
    "x3d_xs",
    "XS",
    frames=4,
    rate=12,
    train_crop=160,
    test_crop=182,
    jitter=(182, 228),
    depth_factor=2.2,
    top1=69.12,
    top5=88.63,
    gflops=0.91,
    fvcore_gflops=0.87,
    params_m=3.79,
)
_register(
    "x3d_s",
    "S",
    frames=13,
    rate=6,
    train_crop=160,
    test_crop=182,
    jitter=(182, 228),
    depth_factor=2.2,
    top1=73.33,
    top5=91.27,
    gflops=2.96,
    fvcore_gflops=2.82,
    params_m=3.79,
)
_register(
    "x3d_m",
    "M",
    frames=16,
    rate=5,
    train_crop=224,
    test_crop=256,
    jitter=(256, 320),
    depth_factor=2.2,
    top1=75.94,
    top5=92.72,
    gflops=6.72,
    fvcore_gflops=6.40,
    params_m=3.79,
)
_register(
    "x3d_l",
    "L",
    frames=16,
    rate=5,
    train_crop=312,
    test_crop=356,
    jitter=(356, 446),
    depth_factor=5.0,
    top1=77.44,
    top5=93.31,
    gflops=26.64,
    fvcore_gflops=25.52,
    params_m=6.15,
)
