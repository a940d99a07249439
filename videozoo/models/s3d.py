"""S3D, the separable 3D Inception network of torchvision (Xie et al., ECCV 2018).

An Inception-v1 layout in which every 3x3x3 convolution is factorised into a 1xkxk spatial
convolution followed by a kx1x1 temporal one, each with batch norm and ReLU.

The module tree follows torchvision's state-dict keys (`features.N...`, `classifier.1`). The
reference classifies with a 1x1x1 convolution applied to every position of a (2, 7, 7)
stride-1 average pool of the last feature map and then averages the position logits; here the
classifier is an equivalent nn.Linear over `forward_positions`, and `convert_checkpoint` flattens
the convolution kernel of torchvision's files.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import TORCHVISION_KINETICS_MEAN, TORCHVISION_KINETICS_STD, InputConfig
from videozoo.models.base import VideoClassifier, positions_from_map
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import TORCHVISION_TERMS, WeightSource

# The reference's batch-norm settings (those of the TensorFlow original).
BN_EPS = 1e-3
BN_MOMENTUM = 1e-3

# (in, branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3) per Inception block.
MIXED_3 = ((192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64))
MIXED_4 = (
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
)
MIXED_5 = ((832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128))

# The reference head pools 2x7x7 windows at stride 1 and averages their logits: at 224x224 the
# last map is 7x7, so a clip of T frames has T/8 - 1 positions, all in time (7 for the 64-frame
# training clips, 15 for the 128-frame evaluation clips).
HEAD_WINDOW = (2, 7, 7)


def conv_bn_relu(
    cin: int,
    cout: int,
    kernel: tuple[int, int, int] = (1, 1, 1),
    stride: tuple[int, int, int] = (1, 1, 1),
    padding: tuple[int, int, int] = (0, 0, 0),
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
        nn.ReLU(inplace=True),
    )


def separable_conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """A kxkxk convolution as 1xkxk (space) then kx1x1 (time), both to `cout` channels."""
    pad = k // 2
    return nn.Sequential(
        conv_bn_relu(cin, cout, (1, k, k), (1, stride, stride), (0, pad, pad)),
        conv_bn_relu(cout, cout, (k, 1, 1), (stride, 1, 1), (pad, 0, 0)),
    )


class SepInception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1x1; 1x1x1 then separable 3x3x3 (twice
    over, with different widths); 3x3x3 max pool then 1x1x1."""

    def __init__(self, cin: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int, b3: int) -> None:
        super().__init__()
        self.branch0 = conv_bn_relu(cin, b0)
        self.branch1 = nn.Sequential(conv_bn_relu(cin, b1_mid), separable_conv(b1_mid, b1, 3))
        self.branch2 = nn.Sequential(conv_bn_relu(cin, b2_mid), separable_conv(b2_mid, b2, 3))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv_bn_relu(cin, b3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


class S3D(VideoClassifier):
    """S3D: strides 2 (space and time) in the first convolution, then pools down to 1/32 in space
    and 1/8 in time before a 1024-channel head."""

    classifier_name = "classifier.1"
    native_formats = frozenset({"torchvision", "videozoo", "safetensors"})

    def __init__(self, *, num_classes: int = 400, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            separable_conv(3, 64, 7, stride=2),  # (B, 64, T/2, H/2, W/2)
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            conv_bn_relu(64, 64),
            separable_conv(64, 192, 3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # (B, 192, T/2, H/8, W/8)
            *(SepInception(*widths) for widths in MIXED_3),
            nn.MaxPool3d(3, stride=2, padding=1),  # (B, 480, T/4, H/16, W/16)
            *(SepInception(*widths) for widths in MIXED_4),
            nn.MaxPool3d(2, stride=2),  # (B, 832, T/8, H/32, W/32)
            *(SepInception(*widths) for widths in MIXED_5),
        )
        self.head_dropout = nn.Dropout(dropout)
        # Index 1, as in the reference's Sequential(Dropout, Conv3d), keeps the checkpoint keys;
        # the dropout itself is applied by the base class through `head_dropout`.
        self.classifier = nn.Sequential()
        self.classifier.add_module("1", nn.Linear(1024, num_classes))

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        state = super().convert_checkpoint(fmt, state, source=source)
        key = f"{cls.classifier_name}.weight"
        weight = state.get(key)
        if weight is not None and weight.dim() == 5:  # (K, 1024, 1, 1, 1), a 1x1x1 convolution
            state = {**state, key: weight.flatten(1)}
        return state

    def forward_positions(self, x: Tensor) -> Tensor:
        fmap = self.features(x)  # (B, 1024, T/8, H/32, W/32)
        return positions_from_map(fmap, HEAD_WINDOW)  # (B, P, 1024)


# torchvision's evaluation of these weights: every video is resampled to 15 fps and cut into every
# window of 128 consecutive frames; with clips_per_video=1 the window at index
# floor(linspace(0, n - 1, 1)) = 0, the start of the video, is the only one classified, after a
# fixed resize to 256x256 and a 224x224 centre crop ("clip-level" accuracy). Training used
# 64-frame clips.
register(
    ModelSpec(
        name="s3d",
        family="s3d",
        cls=S3D,
        arch={},
        input=InputConfig(
            num_frames=128,
            sampling_rate=1,
            fps=15.0,
            short_side=256,
            crop_size=224,
            train_crop_size=224,
            mean=TORCHVISION_KINETICS_MEAN,
            std=TORCHVISION_KINETICS_STD,
            resize=(256, 256),
            test_clips=1,
            test_crops=1,
            train_jitter=(256, 256),
            clip_spacing="torchvision",
        ),
        weights={
            "kinetics400": WeightSource(
                url="https://download.pytorch.org/models/s3d-d76dad2f.pth",
                format="torchvision",
                license=TORCHVISION_TERMS,
                sha256_prefix="d76dad2f",
            )
        },
        metrics=Metrics(
            top1=68.368,
            top5=88.050,
            gflops=17.98,
            params_m=8.32,
            views="1x1",
            source="torchvision 0.28 S3D_Weights.KINETICS400_V1 metadata "
            "(clip-level accuracy with frame_rate=15, clips_per_video=1, clip_len=128)",
            flops_note="the published figure is for a 16x224x224 input; the 128-frame evaluation clip "
            "costs 8 times as much (143.83 GFLOPs)",
        ),
        description=(
            "Separable 3D Inception network (S3D): each 3D convolution factorised into spatial and temporal ones."
        ),
        paper="Rethinking Spatiotemporal Feature Learning: Speed-Accuracy Trade-offs in Video Classification, "
        "Xie et al., ECCV 2018 (arXiv:1712.04851)",
    )
)
