"""SlowFast: two ResNet pathways over the same clip at two frame rates (Feichtenhofer et al., ICCV 2019).

The Slow pathway sees every alpha-th frame with full width; the Fast pathway sees all frames with
1/8 of the width and temporal kernels everywhere. After the stem and after res2..res4, a
kt x 1 x 1 conv with temporal stride alpha maps Fast features to the Slow frame rate (twice the
Fast width) and they are concatenated to the Slow features. The head average-pools each pathway
with its training-size window, concatenates the two and classifies; at a larger test crop the
windows slide with stride 1 and the scores of the positions are averaged.

The module tree follows pytorchvideo's `create_slowfast`, so its model-zoo `.pyth` files load as
they are; PySlowFast checkpoints of the same networks (`s1.pathway0_stem...`, `s1_fuse.conv_f2s`)
are renamed on loading.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier, positions_from_map
from videozoo.models.resnet import (
    BN_FLOPS_NOTE,
    SPATIAL_REDUCTION,
    STAGE_DEPTHS,
    LinearHead,
    ResNetStem,
    ResStage,
    batch_norm,
    init_resnet_weights,
    pyslowfast_block_key,
    rename_pyslowfast,
)
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import WeightSource

SLOW, FAST = 0, 1


class FuseFastToSlow(nn.Module):
    """Fast features -> kt x 1 x 1 conv at temporal stride alpha, BN, ReLU -> appended to Slow's channels."""

    def __init__(self, fast_channels: int, *, kernel: int, alpha: int, channel_ratio: int = 2) -> None:
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(
            fast_channels,
            fast_channels * channel_ratio,
            (kernel, 1, 1),
            stride=(alpha, 1, 1),
            padding=(kernel // 2, 0, 0),
            bias=False,
        )
        self.norm = batch_norm(fast_channels * channel_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        slow, fast = x
        fused = self.activation(self.norm(self.conv_fast_to_slow(fast)))
        return [torch.cat([slow, fused], dim=1), fast]


class TwoPathwayStage(nn.Module):
    """One stage (or the stem) of each pathway, then the Fast-to-Slow fusion (none after res5)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: FuseFastToSlow | None) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        x = [self.multipathway_blocks[SLOW](x[SLOW]), self.multipathway_blocks[FAST](x[FAST])]
        return self.multipathway_fusion(x) if self.multipathway_fusion is not None else x


class PoolConcatPathways(nn.Module):
    """Average-pool each pathway's map with its window, concatenate the channels: (B, P, D_slow + D_fast)."""

    def __init__(self, windows: tuple[tuple[int, int, int], tuple[int, int, int]]) -> None:
        super().__init__()
        self.windows = windows

    def forward(self, x: list[Tensor]) -> Tensor:
        # Both maps have the same H, W and pool to the same number of positions.
        return torch.cat([positions_from_map(m, w) for m, w in zip(x, self.windows, strict=True)], dim=2)


class SlowFast(VideoClassifier):
    """SlowFast for clips given as [slow, fast]: (B, 3, T / alpha, H, W) and (B, 3, T, H, W).

    `num_frames` (T, the Fast pathway's frames) and `crop_size` describe the training clip and fix
    the head's pooling windows. `slow_temporal_kernels` / `fast_temporal_kernels` hold, per stage,
    conv_a's temporal kernels (repeated over the blocks); `fusion_kernel` is the fusion conv's
    temporal kernel.
    """

    classifier_name = "blocks.6.proj"
    native_formats = frozenset({"pyth", "videozoo", "safetensors"})

    def __init__(
        self,
        *,
        num_frames: int,
        crop_size: int = 224,
        depth: int = 50,
        alpha: int = 4,
        beta_inv: int = 8,
        fusion_kernel: int = 7,
        slow_temporal_kernels: tuple[tuple[int, ...], ...] = ((1,), (1,), (3,), (3,)),
        fast_temporal_kernels: tuple[tuple[int, ...], ...] = ((3,), (3,), (3,), (3,)),
        dropout: float = 0.5,
        num_classes: int = 400,
    ) -> None:
        super().__init__()
        if depth not in STAGE_DEPTHS:
            raise ValueError(f"depth must be one of {sorted(STAGE_DEPTHS)}, not {depth}")
        self.alpha = alpha
        width = 64
        fast_width = width // beta_inv

        def fusion(fast_channels: int) -> FuseFastToSlow:
            return FuseFastToSlow(fast_channels, kernel=fusion_kernel, alpha=alpha)

        blocks: list[nn.Module] = [
            TwoPathwayStage(
                ResNetStem(3, width, temporal_kernel=1, pool=True),
                ResNetStem(3, fast_width, temporal_kernel=5, pool=True),
                fusion(fast_width),
            )
        ]
        # Slow stage inputs carry the fused channels: twice the Fast pathway's width.
        slow_in, fast_in = width + 2 * fast_width, fast_width
        stage_depths = STAGE_DEPTHS[depth]
        for i, stage_depth in enumerate(stage_depths):
            slow_out = width * 4 * 2**i
            fast_out = slow_out // beta_inv
            stride = 1 if i == 0 else 2
            slow = ResStage(
                stage_depth,
                slow_in,
                slow_out // 4,
                slow_out,
                temporal_kernels=slow_temporal_kernels[i],
                spatial_stride=stride,
            )
            fast = ResStage(
                stage_depth,
                fast_in,
                fast_out // 4,
                fast_out,
                temporal_kernels=fast_temporal_kernels[i],
                spatial_stride=stride,
            )
            last = i == len(stage_depths) - 1
            blocks.append(TwoPathwayStage(slow, fast, None if last else fusion(fast_out)))
            slow_in, fast_in = slow_out + (0 if last else 2 * fast_out), fast_out

        side = crop_size // SPATIAL_REDUCTION
        self.head_windows = ((num_frames // alpha, side, side), (num_frames, side, side))
        blocks.append(PoolConcatPathways(self.head_windows))
        blocks.append(LinearHead(slow_in + fast_in, num_classes))
        self.blocks = nn.ModuleList(blocks)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        init_resnet_weights(self)

    def forward_positions(self, x: list[Tensor]) -> Tensor:
        if not isinstance(x, (list, tuple)) or len(x) != 2:
            raise TypeError(
                "SlowFast takes [slow, fast] clips: (B, 3, T / alpha, H, W) and (B, 3, T, H, W) "
                f"with alpha = {self.alpha}"
            )
        *body, pool, _head = self.blocks
        x = list(x)
        for block in body:
            x = block(x)  # ends at [(B, 2048, T/alpha, H/32, W/32), (B, 256, T, H/32, W/32)]
        return pool(x)  # (B, P, 2304)

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        if fmt != "pyslowfast":
            return super().convert_checkpoint(fmt, state, source=source)
        # PySlowFast: s1 = stems, s<k> = stage k-1 (res<k>), s<k>_fuse = the fusion after s<k>.
        stem = re.compile(r"s1\.pathway([01])_stem\.(conv|bn)\.(\w+)")
        fuse = re.compile(r"s([1-4])_fuse\.(conv_f2s|bn)\.(\w+)")
        res = re.compile(r"s([2-5])\.pathway([01])_res(\d+)\.(.+)")
        head = re.compile(r"head\.projection\.(weight|bias)")

        def rename(key: str) -> str | None:
            if m := stem.fullmatch(key):
                return f"blocks.0.multipathway_blocks.{m[1]}.{'norm' if m[2] == 'bn' else 'conv'}.{m[3]}"
            if m := fuse.fullmatch(key):
                part = "conv_fast_to_slow" if m[2] == "conv_f2s" else "norm"
                return f"blocks.{int(m[1]) - 1}.multipathway_fusion.{part}.{m[3]}"
            if (m := res.fullmatch(key)) and (rest := pyslowfast_block_key(m[4])):
                return f"blocks.{int(m[1]) - 1}.multipathway_blocks.{m[2]}.res_blocks.{m[3]}.{rest}"
            if m := head.fullmatch(key):
                return f"{cls.classifier_name}.{m[1]}"
            return None

        return rename_pyslowfast(state, rename, source=source)


# -- variants ---------------------------------------------------------------------------------

_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"
# pytorchvideo publishes its model zoo under the repository's licence (README: "released under the Apache 2.0 License").
_LICENSE = "Apache-2.0"
_SOURCE = "pytorchvideo docs/source/model_zoo.md (Kinetics-400; 3 spatial crops x 10 clips)"
_PAPER = "Feichtenhofer, Fan, Malik, He. SlowFast Networks for Video Recognition. ICCV 2019 (arXiv:1812.03982)"


def _register(
    name: str,
    file: str,
    *,
    arch: dict,
    frames: int,
    jitter: tuple[int, int],
    top1: float,
    top5: float,
    gflops: float,
    params_m: float,
    description: str,
    flops_note: str | None = None,
) -> None:
    register(
        ModelSpec(
            name=name,
            family="slowfast",
            cls=SlowFast,
            arch={"num_frames": frames, **arch},
            # PySlowFast configs/Kinetics/pytorchvideo/SLOWFAST_*.yaml: the recipe of these weights.
            input=InputConfig(
                num_frames=frames,
                sampling_rate=2,
                fps=30,
                short_side=256,
                crop_size=256,
                train_crop_size=224,
                slow_alpha=4,
                train_jitter=jitter,
                test_clips=10,
                test_crops=3,
            ),
            weights={"kinetics400": WeightSource(url=f"{_ZOO}/{file}", format="pyth", license=_LICENSE)},
            metrics=Metrics(
                top1=top1,
                top5=top5,
                gflops=gflops,
                params_m=params_m,
                views="10x3",
                source=_SOURCE,
                flops_note=flops_note,
            ),
            description=description,
            paper=_PAPER,
        )
    )


_register(
    "slowfast_r50",
    "SLOWFAST_8x8_R50.pyth",
    arch={"depth": 50, "fusion_kernel": 7},
    frames=32,
    jitter=(256, 320),
    top1=76.94,
    top5=92.69,
    gflops=65.71,
    params_m=34.57,
    description="SlowFast R50, 8x8: Slow 8 frames at stride 8, Fast 32 frames at stride 2",
)
_register(
    "slowfast_r101",
    "SLOWFAST_8x8_R101.pyth",
    arch={"depth": 101, "fusion_kernel": 5},
    frames=32,
    jitter=(256, 320),
    top1=77.90,
    top5=93.27,
    gflops=127.20,
    params_m=62.83,
    flops_note=BN_FLOPS_NOTE.format(bn=1.29, own=125.91),
    description="SlowFast R101, 8x8: Slow 8 frames at stride 8, Fast 32 frames at stride 2",
)
# "R101_50_50": an R101 whose res4 has temporal kernels in its first 6 blocks only.
_RES4_50 = (3,) * 6 + (1,) * 17
_register(
    "slowfast_16x8_r101_50_50",
    "SLOWFAST_16x8_R101_50_50.pyth",
    arch={
        "depth": 101,
        "fusion_kernel": 5,
        "slow_temporal_kernels": ((1,), (1,), _RES4_50, (3,)),
        "fast_temporal_kernels": ((3,), (3,), _RES4_50, (3,)),
    },
    frames=64,
    jitter=(256, 360),
    top1=78.70,
    top5=93.61,
    gflops=215.61,
    params_m=53.77,
    flops_note=BN_FLOPS_NOTE.format(bn=2.59, own=213.02),
    description="SlowFast R101 (50/50 temporal kernels in res4), 16x8: Slow 16 frames at stride 8, "
    "Fast 64 frames at stride 2",
)
