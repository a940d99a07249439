"""The 18-layer video ResNets of torchvision: R3D, MC3 and R(2+1)D (Tran et al., CVPR 2018).

The three variants share one residual network of basic blocks; they differ only in the
convolution each stage uses and in the stem:

- "3d": a full 3x3x3 convolution (R3D everywhere; MC3 in its first stage only).
- "2d": a 1x3x3 convolution with no temporal extent (MC3's later stages). Its shortcut
  downsamples space only, since the stage never strides in time.
- "2plus1d": a 1x3x3 spatial convolution to `midplanes` channels, batch norm, ReLU, then a
  3x1x1 temporal convolution. `midplanes` is chosen so that the pair has about the parameters
  of the 3x3x3 convolution it replaces: (cin * cout * 27) // (cin * 9 + 3 * cout).

The module tree follows torchvision's state-dict keys (`stem.0`, `layer1.0.conv1.0`,
`layer2.0.downsample.0`, `fc`), so torchvision's files load as they are.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import TORCHVISION_KINETICS_MEAN, TORCHVISION_KINETICS_STD, InputConfig
from videozoo.models.base import VideoClassifier, init_fresh_weights, positions_from_map
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import TORCHVISION_TERMS, WeightSource

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_DEPTH = {18: (2, 2, 2, 2)}
CONV_KINDS = ("3d", "2d", "2plus1d")


def spatiotemporal_conv(kind: str, cin: int, cout: int, midplanes: int, stride: int) -> nn.Module:
    """The 3x3x3-like convolution of a block; `stride` applies to space, and to time unless 2d."""
    if kind == "3d":
        return nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
    if kind == "2plus1d":
        return nn.Sequential(
            nn.Conv3d(cin, midplanes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )
    raise ValueError(f"unknown convolution kind {kind!r}; expected one of {CONV_KINDS}")


class BasicBlock(nn.Module):
    """Two spatiotemporal convolutions with batch norm and an identity (or projected) shortcut."""

    def __init__(self, cin: int, cout: int, *, conv: str, stride: int = 1) -> None:
        super().__init__()
        # Both convolutions of the block use the midplanes computed from the block's input width.
        midplanes = (cin * cout * 27) // (cin * 9 + 3 * cout)
        self.conv1 = nn.Sequential(
            spatiotemporal_conv(conv, cin, cout, midplanes, stride), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(spatiotemporal_conv(conv, cout, cout, midplanes, 1), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            time_stride = 1 if conv == "2d" else stride
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, kernel_size=1, stride=(time_stride, stride, stride), bias=False),
                nn.BatchNorm3d(cout),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        out += shortcut  # in place: no second block-sized tensor
        return self.relu(out)


def make_stem(kind: str) -> nn.Sequential:
    """Stride 2 in space only; the (2+1)D stem factorises the 3x7x7 kernel through 45 channels."""
    if kind == "3d":
        return nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
    if kind == "2plus1d":
        return nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
    raise ValueError(f"unknown stem {kind!r}; expected '3d' or '2plus1d'")


class VideoResNet(VideoClassifier):
    """Four stages of basic blocks at widths 64-512, global average pooling, one linear layer.

    `stage_convs` names the convolution kind of each stage (see the module docstring); `stem` is
    "3d" or "2plus1d". Stages 2-4 halve time and space (MC3's "2d" stages halve space only).
    """

    classifier_name = "fc"
    native_formats = frozenset({"torchvision", "videozoo", "safetensors"})

    def __init__(
        self,
        *,
        num_classes: int = 400,
        dropout: float = 0.0,
        depth: int = 18,
        stage_convs: tuple[str, str, str, str] = ("3d", "3d", "3d", "3d"),
        stem: str = "3d",
    ) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_DEPTH:
            raise ValueError(f"depth must be one of {sorted(BLOCKS_PER_DEPTH)}, not {depth}")
        if len(stage_convs) != 4:
            raise ValueError(f"stage_convs needs one kind per stage (4), got {stage_convs!r}")
        self.stem = make_stem(stem)
        cin = 64
        stages = zip(STAGE_WIDTHS, BLOCKS_PER_DEPTH[depth], stage_convs, strict=True)
        for index, (width, blocks, conv) in enumerate(stages):
            first_stride = 1 if index == 0 else 2
            stage = nn.Sequential(
                *(
                    BasicBlock(cin if b == 0 else width, width, conv=conv, stride=first_stride if b == 0 else 1)
                    for b in range(blocks)
                )
            )
            self.add_module(f"layer{index + 1}", stage)
            cin = width
        # The reference has no dropout before its classifier.
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc = nn.Linear(cin, num_classes)
        init_fresh_weights(self)  # torchvision's initialisation (its convs have no bias)

    def forward_positions(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 64, T, H/2, W/2)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, T/8, H/16, W/16)
        return positions_from_map(x, None)  # (B, 1, 512)


# -- the registered variants -------------------------------------------------------------------

# torchvision's evaluation (references/video_classification with the weights' transforms) for
# these weights: every video is resampled to 15 fps and cut into every window of 16 consecutive
# frames (a step of one frame); 5 of those windows, at indices floor(linspace(0, n - 1, 5)), are
# classified after a fixed resize to 128x171 and a 112x112 centre crop, and the softmax scores
# of a video's clips are summed ("video-level" accuracy).
_TORCHVISION_112 = InputConfig(
    num_frames=16,
    sampling_rate=1,
    fps=15.0,
    short_side=128,
    crop_size=112,
    train_crop_size=112,
    mean=TORCHVISION_KINETICS_MEAN,
    std=TORCHVISION_KINETICS_STD,
    resize=(128, 171),
    test_clips=5,
    test_crops=1,
    # Training resizes to the same fixed 128x171 and crops at random: no scale jitter.
    train_jitter=(128, 128),
    clip_spacing="torchvision",
)

_PAPER = (
    "A Closer Look at Spatiotemporal Convolutions for Action Recognition, Tran et al., CVPR 2018 (arXiv:1711.11248)"
)


def _torchvision_weights(name: str, sha256_prefix: str) -> dict[str, WeightSource]:
    # torchvision names its files <model>-<first 8 hex digits of the sha256>.pth.
    url = f"https://download.pytorch.org/models/{name}-{sha256_prefix}.pth"
    return {
        "kinetics400": WeightSource(
            url=url, format="torchvision", license=TORCHVISION_TERMS, sha256_prefix=sha256_prefix
        )
    }


def _torchvision_metrics(weights_enum: str, *, top1: float, top5: float, gflops: float, params_m: float) -> Metrics:
    return Metrics(
        top1=top1,
        top5=top5,
        gflops=gflops,
        params_m=params_m,
        views="5x1",
        source=f"torchvision 0.28 {weights_enum}.KINETICS400_V1 metadata "
        "(video-level accuracy with frame_rate=15, clips_per_video=5, clip_len=16)",
    )


register(
    ModelSpec(
        name="r3d_18",
        family="video_resnet",
        cls=VideoResNet,
        arch={"stage_convs": ("3d", "3d", "3d", "3d"), "stem": "3d"},
        input=_TORCHVISION_112,
        weights=_torchvision_weights("r3d_18", "b3b3357e"),
        metrics=_torchvision_metrics("R3D_18_Weights", top1=63.200, top5=83.479, gflops=40.70, params_m=33.37),
        description="18-layer ResNet with 3x3x3 convolutions throughout (R3D).",
        paper=_PAPER,
    )
)

register(
    ModelSpec(
        name="mc3_18",
        family="video_resnet",
        cls=VideoResNet,
        arch={"stage_convs": ("3d", "2d", "2d", "2d"), "stem": "3d"},
        input=_TORCHVISION_112,
        weights=_torchvision_weights("mc3_18", "a90a0ba3"),
        metrics=_torchvision_metrics("MC3_18_Weights", top1=63.960, top5=84.130, gflops=43.34, params_m=11.70),
        description="18-layer mixed-convolution ResNet: 3x3x3 convolutions in the first stage, 1x3x3 after (MC3).",
        paper=_PAPER,
    )
)

register(
    ModelSpec(
        name="r2plus1d_18",
        family="video_resnet",
        cls=VideoResNet,
        arch={"stage_convs": ("2plus1d", "2plus1d", "2plus1d", "2plus1d"), "stem": "2plus1d"},
        input=_TORCHVISION_112,
        weights=_torchvision_weights("r2plus1d_18", "91a641e6"),
        metrics=_torchvision_metrics("R2Plus1D_18_Weights", top1=67.463, top5=86.175, gflops=40.52, params_m=31.51),
        description="18-layer ResNet with every 3D convolution factorised into a spatial and a temporal one (R(2+1)D).",
        paper=_PAPER,
    )
)
