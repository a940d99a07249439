"""Single-pathway video ResNets: Slow, C2D, I3D, CSN and R(2+1)D, as in pytorchvideo's model zoo.

All five are a ResNet-50/101 trunk of bottleneck blocks (1x1x1 reduce, spatial conv, 1x1x1
expand) and differ in where they look along time:
- the stem's temporal kernel (1 for Slow/C2D/R(2+1)D, 3 for CSN, 5 for I3D);
- the temporal kernel of each block's first conv (`conv_a`): 3 in res4/res5 for Slow, a 3/1
  pattern in every stage for I3D, never for C2D;
- the middle conv (`conv_b`): 1x3x3 ("spatial"), a 3x3x3 conv per channel ("depthwise", CSN), or a
  3x1x1 temporal conv after a norm and ReLU on a 1x3x3 one ("2plus1d", R(2+1)D);
- temporal striding: CSN and R(2+1)D stride time in `conv_b`; C2D and I3D instead halve the frames
  with a 2x1x1 max pool after res2.

The head averages the last map with the training-size window and applies a linear classifier;
at a larger test crop the window slides with stride 1 and the scores of the positions are
averaged. The module tree follows pytorchvideo's `create_resnet`/`create_csn`/`create_r2plus1d`,
so the model-zoo `.pyth` files load as they are; PySlowFast checkpoints of the same networks
(`s1.pathway0_stem...`) are renamed on loading.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier, init_fresh_weights, positions_from_map
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import WeightSource

# Bottleneck blocks per stage (res2..res5).
STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Input side / last map's side: the stem conv, then the stem pool (or res2's stride for
# R(2+1)D), then res3..res5 each halve it.
SPATIAL_REDUCTION = 32
CONV_B_KINDS = ("spatial", "depthwise", "2plus1d")


def batch_norm(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class ResNetStem(nn.Module):
    """A kt x 7 x 7 conv at spatial stride 2, BN, ReLU and (optionally) a 1x3x3 max pool at stride 2."""

    def __init__(self, in_channels: int, out_channels: int, *, temporal_kernel: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            (temporal_kernel, 7, 7),
            stride=(1, 2, 2),
            padding=(temporal_kernel // 2, 3, 3),
            bias=False,
        )
        self.norm = batch_norm(out_channels)
        self.activation = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)) if pool else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.activation(self.norm(self.conv(x)))
        return self.pool(x) if self.pool is not None else x


class Conv2plus1d(nn.Module):
    """A 3x3x3 conv factored into a 3x1x1 temporal conv, BN, ReLU and a 1x3x3 spatial conv."""

    def __init__(self, channels: int, *, stride: tuple[int, int, int]) -> None:
        super().__init__()
        st, sh, sw = stride
        self.conv_t = nn.Conv3d(channels, channels, (3, 1, 1), stride=(st, 1, 1), padding=(1, 0, 0), bias=False)
        self.norm = batch_norm(channels)
        self.activation = nn.ReLU(inplace=True)
        self.conv_xy = nn.Conv3d(channels, channels, (1, 3, 3), stride=(1, sh, sw), padding=(0, 1, 1), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_xy(self.activation(self.norm(self.conv_t(x))))


def _middle_conv(kind: str, channels: int, *, temporal_stride: int, spatial_stride: int) -> nn.Module:
    if kind == "spatial":
        # Slow/C2D/I3D stride time (never, in the published variants) in conv_a, not here.
        return nn.Conv3d(
            channels, channels, (1, 3, 3), stride=(1, spatial_stride, spatial_stride), padding=(0, 1, 1), bias=False
        )
    stride = (temporal_stride, spatial_stride, spatial_stride)
    if kind == "depthwise":
        return nn.Conv3d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)
    if kind == "2plus1d":
        return Conv2plus1d(channels, stride=stride)
    raise ValueError(f"conv_b must be one of {CONV_B_KINDS}, not {kind!r}")


class Bottleneck(nn.Module):
    """kt x 1 x 1 reduce -> middle conv (`conv_b`, carries the spatial stride) -> 1x1x1 expand."""

    def __init__(
        self,
        in_channels: int,
        inner: int,
        out_channels: int,
        *,
        temporal_kernel: int,
        conv_b: str,
        temporal_stride: int,
        spatial_stride: int,
    ) -> None:
        super().__init__()
        a_stride = temporal_stride if conv_b == "spatial" else 1
        self.conv_a = nn.Conv3d(
            in_channels,
            inner,
            (temporal_kernel, 1, 1),
            stride=(a_stride, 1, 1),
            padding=(temporal_kernel // 2, 0, 0),
            bias=False,
        )
        self.norm_a = batch_norm(inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = _middle_conv(conv_b, inner, temporal_stride=temporal_stride, spatial_stride=spatial_stride)
        self.norm_b = batch_norm(inner)
        self.act_b = nn.ReLU(inplace=True)
        self.conv_c = nn.Conv3d(inner, out_channels, 1, bias=False)
        self.norm_c = batch_norm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """Residual unit; the shortcut is a strided 1x1x1 conv + BN when the shape changes."""

    def __init__(
        self,
        in_channels: int,
        inner: int,
        out_channels: int,
        *,
        temporal_kernel: int,
        conv_b: str,
        temporal_stride: int,
        spatial_stride: int,
    ) -> None:
        super().__init__()
        self.branch1_conv = None
        self.branch1_norm = None
        if in_channels != out_channels or temporal_stride * spatial_stride > 1:
            self.branch1_conv = nn.Conv3d(
                in_channels, out_channels, 1, stride=(temporal_stride, spatial_stride, spatial_stride), bias=False
            )
            self.branch1_norm = batch_norm(out_channels)
        self.branch2 = Bottleneck(
            in_channels,
            inner,
            out_channels,
            temporal_kernel=temporal_kernel,
            conv_b=conv_b,
            temporal_stride=temporal_stride,
            spatial_stride=spatial_stride,
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_norm(self.branch1_conv(x))
        # In place: a fresh output the size of the block's would cost as much again as the addition.
        out = self.branch2(x)
        out += shortcut
        return self.activation(out)


class ResStage(nn.Module):
    """`depth` residual blocks; the first one strides and changes the width.

    `temporal_kernels` gives conv_a's temporal kernel block by block, repeated as needed (so (3, 1)
    alternates and (3,) is used by every block).
    """

    def __init__(
        self,
        depth: int,
        in_channels: int,
        inner: int,
        out_channels: int,
        *,
        temporal_kernels: tuple[int, ...],
        conv_b: str = "spatial",
        temporal_stride: int = 1,
        spatial_stride: int = 2,
    ) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(
                in_channels if i == 0 else out_channels,
                inner,
                out_channels,
                temporal_kernel=temporal_kernels[i % len(temporal_kernels)],
                conv_b=conv_b,
                temporal_stride=temporal_stride if i == 0 else 1,
                spatial_stride=spatial_stride if i == 0 else 1,
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class LinearHead(nn.Module):
    """Holds the classifier; the model pools the map into head positions before it (see base)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, num_classes)


def init_resnet_weights(model: nn.Module) -> None:
    """Initialise a fresh model as pytorchvideo does.

    He-normal (fan-out) convs, BN at identity except the last BN of each bottleneck, which starts
    at zero so that every residual block starts as the identity, and a small-normal classifier.
    """
    init_fresh_weights(model)
    for m in model.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.norm_c.weight)


# -- PySlowFast names -------------------------------------------------------------------------
# PySlowFast names the same layers `s1.pathway0_stem.{conv,bn}`, `s<k>.pathway<p>_res<m>.` +
# `branch1`, `branch1_bn`, `branch2.{a,b,c}`, `branch2.{a,b,c}_bn`, and `head.projection`.

_PYSLOWFAST_BLOCK_PARTS = {
    "branch1": "branch1_conv",
    "branch1_bn": "branch1_norm",
    **{f"branch2.{c}": f"branch2.conv_{c}" for c in "abc"},
    **{f"branch2.{c}_bn": f"branch2.norm_{c}" for c in "abc"},
}
_PYSLOWFAST_BLOCK = re.compile(r"(branch1|branch1_bn|branch2\.[abc]|branch2\.[abc]_bn)\.(\w+)")


def pyslowfast_block_key(rest: str) -> str | None:
    """`branch2.a_bn.running_mean` -> `branch2.norm_a.running_mean`; None if not a block tensor."""
    m = _PYSLOWFAST_BLOCK.fullmatch(rest)
    return f"{_PYSLOWFAST_BLOCK_PARTS[m[1]]}.{m[2]}" if m else None


def rename_pyslowfast(state: dict[str, Tensor], rename, *, source: str) -> dict[str, Tensor]:
    """Apply `rename(key) -> new key or None` to every tensor; fail listing the unknown keys.

    Published PySlowFast files may lack BN `num_batches_tracked` counters (bookkeeping only); the
    missing ones are added as zero.
    """
    from videozoo.weights.checkpoint import CheckpointError

    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = rename(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else "")
        raise CheckpointError(f"{source}: PySlowFast tensors with no counterpart in this model: {shown}")
    for key in list(out):
        if key.endswith(".running_mean"):
            out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.zeros((), dtype=torch.int64))
    return out


# -- the model --------------------------------------------------------------------------------


class ResNet3d(VideoClassifier):
    """A single-pathway video ResNet for clips of shape (B, 3, T, H, W).

    `num_frames` and `crop_size` describe the training clip: they fix the head's pooling window
    (the final T, crop_size / 32 squared), which slides over larger test crops.
    `temporal_kernels` holds, per stage, conv_a's temporal kernels (repeated over the blocks);
    `temporal_strides` and `spatial_strides` hold each stage's strides.
    """

    classifier_name = "blocks.5.proj"
    native_formats = frozenset({"pyth", "videozoo", "safetensors"})
    #: a 2x1x1 max pool after res2 (C2D, I3D); it takes a slot in `blocks` (see PooledResNet3d)
    pool_after_res2: bool = False

    def __init__(
        self,
        *,
        num_frames: int,
        crop_size: int = 224,
        depth: int = 50,
        width: int = 64,
        stem_temporal_kernel: int = 1,
        stem_pool: bool = True,
        temporal_kernels: tuple[tuple[int, ...], ...] = ((1,), (1,), (3,), (3,)),
        conv_b: str = "spatial",
        temporal_strides: tuple[int, int, int, int] = (1, 1, 1, 1),
        spatial_strides: tuple[int, int, int, int] = (1, 2, 2, 2),
        dropout: float = 0.5,
        num_classes: int = 400,
    ) -> None:
        super().__init__()
        if depth not in STAGE_DEPTHS:
            raise ValueError(f"depth must be one of {sorted(STAGE_DEPTHS)}, not {depth}")
        if (2 if stem_pool else 1) * 2 ** sum(s == 2 for s in spatial_strides) != SPATIAL_REDUCTION // 2:
            raise ValueError("the stem pool and the stage strides must reduce the side 32 times")
        blocks: list[nn.Module] = [ResNetStem(3, width, temporal_kernel=stem_temporal_kernel, pool=stem_pool)]
        in_channels = width
        frames = num_frames
        for i, stage_depth in enumerate(STAGE_DEPTHS[depth]):
            out_channels = width * 4 * 2**i
            blocks.append(
                ResStage(
                    stage_depth,
                    in_channels,
                    out_channels // 4,
                    out_channels,
                    temporal_kernels=temporal_kernels[i],
                    conv_b=conv_b,
                    temporal_stride=temporal_strides[i],
                    spatial_stride=spatial_strides[i],
                )
            )
            frames //= temporal_strides[i]
            if i == 0 and self.pool_after_res2:
                blocks.append(nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)))
                frames //= 2
            in_channels = out_channels
        blocks.append(LinearHead(in_channels, num_classes))
        self.blocks = nn.ModuleList(blocks)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        side = crop_size // SPATIAL_REDUCTION
        self.head_window = (frames, side, side)
        init_resnet_weights(self)

    def forward_positions(self, x: Tensor) -> Tensor:
        *body, _head = self.blocks
        for block in body:
            x = block(x)  # ends at (B, 2048, T', H/32, W/32)
        return positions_from_map(x, self.head_window)  # (B, P, 2048)

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        if fmt != "pyslowfast":
            return super().convert_checkpoint(fmt, state, source=source)
        # s1 is the stem, s2..s5 the stages; the res2 pool (no weights) shifts the later stages.
        stage_index = {2: 1, 3: 2, 4: 3, 5: 4}
        if cls.pool_after_res2:
            stage_index.update({3: 3, 4: 4, 5: 5})
        stem = re.compile(r"s1\.pathway0_stem\.(conv|bn)\.(\w+)")
        res = re.compile(r"s([2-5])\.pathway0_res(\d+)\.(.+)")
        head = re.compile(r"head\.projection\.(weight|bias)")

        def rename(key: str) -> str | None:
            if m := stem.fullmatch(key):
                return f"blocks.0.{'norm' if m[1] == 'bn' else 'conv'}.{m[2]}"
            if (m := res.fullmatch(key)) and (rest := pyslowfast_block_key(m[3])):
                return f"blocks.{stage_index[int(m[1])]}.res_blocks.{m[2]}.{rest}"
            if m := head.fullmatch(key):
                return f"{cls.classifier_name}.{m[1]}"
            return None

        return rename_pyslowfast(state, rename, source=source)


class PooledResNet3d(ResNet3d):
    """ResNet3d with a 2x1x1 temporal max pool after res2 (C2D, I3D).

    The pool is `blocks.2` in the checkpoints, so res3..res5 are `blocks.3..5` and the head is
    `blocks.6`.
    """

    classifier_name = "blocks.6.proj"
    pool_after_res2 = True


# -- variants ---------------------------------------------------------------------------------

_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"
# pytorchvideo publishes its model zoo under the repository's licence (README: "released under the Apache 2.0 License").
_LICENSE = "Apache-2.0"
_SOURCE = "pytorchvideo docs/source/model_zoo.md (Kinetics-400; 3 spatial crops x 10 clips)"
_SLOWFAST_PAPER = "Feichtenhofer, Fan, Malik, He. SlowFast Networks for Video Recognition. ICCV 2019 (arXiv:1812.03982)"


def _kinetics_input(frames: int, rate: int) -> InputConfig:
    # PySlowFast configs/Kinetics/pytorchvideo/*.yaml: the recipe of the pytorchvideo weights.
    return InputConfig(
        num_frames=frames,
        sampling_rate=rate,
        fps=30,
        short_side=256,
        crop_size=256,
        train_crop_size=224,
        train_jitter=(256, 320),
        test_clips=10,
        test_crops=3,
    )


# The published GFLOPs of C2D, I3D, CSN, R(2+1)D and the SlowFast R101s exceed a count of
# convolutions and matrix products by exactly 5 x the BatchNorm output elements; Slow and SlowFast
# R50's do not.
BN_FLOPS_NOTE = (
    "the published figure also counts 5 FLOPs per BatchNorm output element (fvcore's count for BN in "
    "training mode, {bn:.2f} G here); convolutions and matrix products alone come to {own:.2f}"
)


def _metrics(top1: float, top5: float, gflops: float, params_m: float, *, flops_note: str | None = None) -> Metrics:
    return Metrics(
        top1=top1, top5=top5, gflops=gflops, params_m=params_m, views="10x3", source=_SOURCE, flops_note=flops_note
    )


register(
    ModelSpec(
        name="slow_r50",
        family="resnet3d",
        cls=ResNet3d,
        arch={"num_frames": 8},
        input=_kinetics_input(8, 8),
        weights={"kinetics400": WeightSource(url=f"{_ZOO}/SLOW_8x8_R50.pyth", format="pyth", license=_LICENSE)},
        metrics=_metrics(74.58, 91.63, 54.52, 32.45),
        description="Slow pathway of SlowFast alone, R50, 8x8 clips (temporal kernels in res4/res5 only)",
        paper=_SLOWFAST_PAPER,
    )
)

register(
    ModelSpec(
        name="c2d_r50",
        family="resnet3d",
        cls=PooledResNet3d,
        arch={"num_frames": 8, "temporal_kernels": ((1,), (1,), (1,), (1,))},
        input=_kinetics_input(8, 8),
        weights={"kinetics400": WeightSource(url=f"{_ZOO}/C2D_8x8_R50.pyth", format="pyth", license=_LICENSE)},
        metrics=_metrics(71.46, 89.68, 25.89, 24.33, flops_note=BN_FLOPS_NOTE.format(bn=0.43, own=25.46)),
        description="C2D R50, 8x8 clips: a 2D ResNet per frame with a temporal max pool after res2",
        paper="Wang, Girshick, Gupta, He. Non-local Neural Networks. CVPR 2018 (arXiv:1711.07971)",
    )
)

register(
    ModelSpec(
        name="i3d_r50",
        family="resnet3d",
        cls=PooledResNet3d,
        arch={
            "num_frames": 8,
            "stem_temporal_kernel": 5,
            "temporal_kernels": ((3,), (3, 1), (3, 1), (1, 3)),
        },
        input=_kinetics_input(8, 8),
        weights={"kinetics400": WeightSource(url=f"{_ZOO}/I3D_8x8_R50.pyth", format="pyth", license=_LICENSE)},
        metrics=_metrics(73.27, 90.70, 37.53, 28.04, flops_note=BN_FLOPS_NOTE.format(bn=0.42, own=37.11)),
        description="I3D R50 (inflated ResNet-50), 8x8 clips, temporal max pool after res2",
        paper="Carreira, Zisserman. Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset. "
        "CVPR 2017 (arXiv:1705.07750)",
    )
)

register(
    ModelSpec(
        name="csn_r101",
        family="resnet3d",
        cls=ResNet3d,
        arch={
            "num_frames": 32,
            "depth": 101,
            "stem_temporal_kernel": 3,
            "temporal_kernels": ((1,), (1,), (1,), (1,)),
            "conv_b": "depthwise",
            "temporal_strides": (1, 2, 2, 2),
            "dropout": 0.0,
        },
        input=_kinetics_input(32, 2),
        weights={"kinetics400": WeightSource(url=f"{_ZOO}/CSN_32x2_R101.pyth", format="pyth", license=_LICENSE)},
        metrics=_metrics(77.00, 92.90, 75.62, 22.21, flops_note=BN_FLOPS_NOTE.format(bn=1.86, own=73.76)),
        description="Interaction-reduced channel-separated network (ir-CSN), R101, 32x2 clips",
        paper="Tran, Wang, Torresani, Feiszli. Video Classification with Channel-Separated Convolutional "
        "Networks. ICCV 2019 (arXiv:1904.02811)",
    )
)

register(
    ModelSpec(
        name="r2plus1d_r50",
        family="resnet3d",
        cls=ResNet3d,
        arch={
            "num_frames": 16,
            "stem_pool": False,
            "temporal_kernels": ((1,), (1,), (1,), (1,)),
            "conv_b": "2plus1d",
            "temporal_strides": (1, 1, 2, 2),
            "spatial_strides": (2, 2, 2, 2),
        },
        input=_kinetics_input(16, 4),
        weights={"kinetics400": WeightSource(url=f"{_ZOO}/R2PLUS1D_16x4_R50.pyth", format="pyth", license=_LICENSE)},
        metrics=_metrics(76.01, 92.23, 76.45, 28.11, flops_note=BN_FLOPS_NOTE.format(bn=1.3, own=75.15)),
        description="R(2+1)D R50 (bottleneck blocks with factored 3D convs), 16x4 clips; "
        "its reference scores are softmax probabilities",
        paper="Tran, Wang, Torresani, Ray, LeCun, Paluri. A Closer Look at Spatiotemporal Convolutions for "
        "Action Recognition. CVPR 2018 (arXiv:1711.11248)",
    )
)
