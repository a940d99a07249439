"""I3D ResNet-50, with or without non-local blocks: the video-nonlocal-net Kinetics-400 models.

The network is the one trained in Caffe2 for "Non-local Neural Networks" (Wang et al., CVPR 2018) and
ported to PyTorch as `I3Res50` by Tushar-N/pytorch-resnet3d; this module computes what that port
computes. The module tree uses the port's names (`conv1`, `bn1`, `layer1.0.conv1`, ...,
`layer2.1.nl.theta`, `fc`), so the port's converted `.pth` files load as they are. The original
Caffe2 pickles (blobs `conv1_w`, `res2_0_branch2a_bn_s`, `nonlocal_conv3_1_theta_w`, `pred_w`, ...)
are renamed on load by `convert_checkpoint`; `to_caffe2_blobs` writes the Caffe2 names back.

Shape walk for a 32-frame 224 clip, (C, T, H, W):
    stem conv 5x7x7 /2 and max-pool 2x3x3 /2   -> (64, 8, 55, 55)   (the pool is unpadded)
    layer1 (res2), then a temporal max-pool /2 -> (256, 4, 55, 55)
    layer2 (res3) /2 spatially                 -> (512, 4, 28, 28)
    layer3 (res4) /2 spatially                 -> (1024, 4, 14, 14)
    layer4 (res5) /2 spatially                 -> (2048, 4, 7, 7)
    global average pool, dropout, fc           -> (400,)

Head: the PyTorch port averages the whole final map (one position at any crop). The Caffe2 test
instead ran the classifier convolutionally over a 4x7x7 window at stride 1 and averaged the
per-position softmax (4 positions at a 256 crop); at the 224 training crop the two agree.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import WeightSource

# Per stage: blocks, bottleneck width, spatial stride of the first block, and which blocks inflate
# their first 1x1 conv to 3x1x1 (1) or keep it 1x1x1 (0).
_STAGES = (
    (3, 64, 1, (1, 1, 1)),
    (4, 128, 2, (1, 0, 1, 0)),
    (6, 256, 2, (1, 0, 1, 0, 1, 0)),
    (3, 512, 2, (0, 1, 0)),
)
# Non-local blocks follow every second block of res3 and res4 (blocks 1, 3, 5 of a stage).
_NON_LOCAL_STAGES = (2, 3)
_EXPANSION = 4


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block over all (t, h, w) positions, added to its input.

    Keys and values come from a 1x2x2 max-pooled copy of the input, which quarters the cost of the
    (positions x positions) affinity. The output 1x1x1 conv is followed by a batch norm whose scale
    starts at zero, so a freshly built block is the identity.
    """

    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.inner = inner
        self.theta = nn.Conv3d(channels, inner, kernel_size=1)
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.phi = nn.Conv3d(channels, inner, kernel_size=1)
        self.g = nn.Conv3d(channels, inner, kernel_size=1)
        self.out = nn.Conv3d(inner, channels, kernel_size=1)
        self.bn = nn.BatchNorm3d(channels)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        pooled = self.maxpool(x)
        # One attention head, as a (B, 1, N, inner) axis: the 4-D form ONNX exporters translate.
        query = self.theta(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, T*H*W, inner)
        key = self.phi(pooled).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, T*H/2*W/2, inner)
        value = self.g(pooled).flatten(2).transpose(1, 2).unsqueeze(1)
        # softmax(query key^T / sqrt(inner)) value, as the reference computes it
        y = F.scaled_dot_product_attention(query, key, value).squeeze(1)  # (B, T*H*W, inner)
        y = y.transpose(1, 2).reshape(b, self.inner, t, h, w)
        return x + self.bn(self.out(y))


class Bottleneck3d(nn.Module):
    """ResNet bottleneck: (3x1x1 or 1x1x1) -> 1x3x3 (spatial stride) -> 1x1x1, plus shortcut."""

    def __init__(self, in_channels: int, width: int, *, stride: int, temporal_kernel: int, non_local: bool):
        super().__init__()
        out_channels = width * _EXPANSION
        self.conv1 = nn.Conv3d(
            in_channels, width, kernel_size=(temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False
        )
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(
            width, width, kernel_size=(1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )
        self.nl = NonLocal3d(out_channels, out_channels // 2) if non_local else None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += shortcut  # in place: no second block-sized tensor
        out = self.relu(out)
        return out if self.nl is None else self.nl(out)


class I3DResNet(VideoClassifier):
    """I3D ResNet-50 of video-nonlocal-net; `non_local` adds the five non-local blocks."""

    classifier_name = "fc"
    # pytorch-resnet3d's converted .pth files are bare state dicts in this module's names.
    native_formats = frozenset({"torchvision", "videozoo", "safetensors"})

    def __init__(self, *, num_classes: int = 400, dropout: float = 0.5, non_local: bool = False):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=(5, 7, 7), stride=2, padding=(2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool3d(kernel_size=(2, 3, 3), stride=2)
        self.maxpool2 = nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))
        in_channels = 64
        for index, (blocks, width, stride, temporal) in enumerate(_STAGES, start=1):
            with_nl = non_local and index in _NON_LOCAL_STAGES
            layer = []
            for i in range(blocks):
                layer.append(
                    Bottleneck3d(
                        in_channels,
                        width,
                        stride=stride if i == 0 else 1,
                        temporal_kernel=1 + 2 * temporal[i],
                        non_local=with_nl and i % 2 == 1,
                    )
                )
                in_channels = width * _EXPANSION
            self.add_module(f"layer{index}", nn.Sequential(*layer))
        self.head_dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The Caffe2 training initialisation: MSRA convs, residual branches and non-local blocks
        # starting as identities (zero last-BN scale), Gaussian(0.01) non-local convs and classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Bottleneck3d):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, NonLocal3d):
                for conv in (m.theta, m.phi, m.g, m.out):
                    nn.init.normal_(conv.weight, std=0.01)
                    nn.init.zeros_(conv.bias)
                nn.init.zeros_(m.bn.weight)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_positions(self, x: Tensor) -> Tensor:
        x = self.maxpool1(self.relu(self.bn1(self.conv1(x))))  # (B, 64, T/4, H/4, W/4)
        x = self.maxpool2(self.layer1(x))  # (B, 256, T/8, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(x)))  # (B, 2048, T/8, H/32, W/32)
        return x.mean(dim=(2, 3, 4)).unsqueeze(1)  # (B, 1, 2048)

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        if fmt == "caffe2":
            state = from_caffe2_blobs(state, source=source, model_cls=cls)
        elif fmt not in cls.native_formats:
            return super().convert_checkpoint(fmt, state, source=source)
        return _with_batch_counters(state)


# -- Caffe2 blob names ---------------------------------------------------------------------------

_BN_SUFFIX = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}
_CONV_SUFFIX = {"weight": "w", "bias": "b"}
_STEM_AND_HEAD = {
    "conv1.weight": "conv1_w",
    "fc.weight": "pred_w",
    "fc.bias": "pred_b",
    **{f"bn1.{k}": f"res_conv1_bn_{s}" for k, s in _BN_SUFFIX.items()},
}
_BLOCK_KEY = re.compile(r"layer(\d)\.(\d+)\.(.+)\.(weight|bias|running_mean|running_var)")


def caffe2_blob_name(key: str) -> str | None:
    """The Caffe2 blob holding state-dict entry `key`; None for entries Caffe2 does not store."""
    if key.endswith("num_batches_tracked"):
        return None
    if key in _STEM_AND_HEAD:
        return _STEM_AND_HEAD[key]
    match = _BLOCK_KEY.fullmatch(key)
    if match is None:
        raise KeyError(f"no Caffe2 blob corresponds to {key!r}")
    layer, block, module, kind = match.groups()
    stage = int(layer) + 1  # layer1 is Caffe2's res2
    if module in ("conv1", "conv2", "conv3"):
        return f"res{stage}_{block}_branch2{'abc'[int(module[-1]) - 1]}_{_CONV_SUFFIX[kind]}"
    if module in ("bn1", "bn2", "bn3"):
        return f"res{stage}_{block}_branch2{'abc'[int(module[-1]) - 1]}_bn_{_BN_SUFFIX[kind]}"
    if module == "downsample.0":
        return f"res{stage}_{block}_branch1_{_CONV_SUFFIX[kind]}"
    if module == "downsample.1":
        return f"res{stage}_{block}_branch1_bn_{_BN_SUFFIX[kind]}"
    if module in ("nl.theta", "nl.phi", "nl.g", "nl.out"):
        return f"nonlocal_conv{stage}_{block}_{module[3:]}_{_CONV_SUFFIX[kind]}"
    if module == "nl.bn":
        return f"nonlocal_conv{stage}_{block}_bn_{_BN_SUFFIX[kind]}"
    raise KeyError(f"no Caffe2 blob corresponds to {key!r}")


def to_caffe2_blobs(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state dict of `I3DResNet` as {Caffe2 blob name: tensor}, the inverse of loading."""
    blobs = {}
    for key, value in state.items():
        name = caffe2_blob_name(key)
        if name is not None:
            blobs[name] = value
    return blobs


def from_caffe2_blobs(
    blobs: dict[str, Tensor], *, source: str = "<blobs>", model_cls: type[I3DResNet] | None = None
) -> dict[str, Tensor]:
    """{Caffe2 blob name: tensor} (optimizer blobs already dropped) -> an `I3DResNet` state dict.

    The variant is told by the presence of non-local blobs; every blob that variant needs must be
    there and no other, and the error names the Caffe2 blobs at fault.
    """
    from videozoo.weights.checkpoint import CheckpointError

    non_local = any(name.startswith("nonlocal_") for name in blobs)
    with torch.device("meta"):
        skeleton = (model_cls or I3DResNet)(non_local=non_local)
    wanted = {name: key for key in skeleton.state_dict() if (name := caffe2_blob_name(key)) is not None}
    missing = [name for name in wanted if name not in blobs]
    unexpected = [name for name in blobs if name not in wanted]
    if missing or unexpected:
        variant = "with" if non_local else "without"
        problems = (("missing blobs", missing), ("unexpected blobs", unexpected))
        parts = [f"{len(v)} {t}: {', '.join(v)}" for t, v in problems if v]
        raise CheckpointError(
            f"{source}: not a video-nonlocal-net I3D ResNet-50 ({variant} non-local blocks) checkpoint; "
            + "; ".join(parts)
        )
    return {wanted[name]: value for name, value in blobs.items()}


def _with_batch_counters(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # Caffe2 blobs and pytorch-resnet3d's .pth files carry no BatchNorm step counters.
    state = dict(state)
    for key in [k for k in state if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        state.setdefault(counter, torch.zeros((), dtype=torch.long))
    return state


# -- variants ------------------------------------------------------------------------------------

_INPUT = InputConfig(
    num_frames=32,
    sampling_rate=2,
    fps=30.0,
    short_side=256,
    # video-nonlocal-net tests 3 crops of 256 per clip; pytorch-resnet3d also centre-crops 256.
    crop_size=256,
    train_crop_size=224,
    mean=(114.75, 114.75, 114.75),
    std=(57.375, 57.375, 57.375),
    value_scale=255.0,
    # The Caffe2 decoder produced RGB24 frames and the models were trained with USE_BGR False.
    channel_order="RGB",
    test_clips=10,
    test_crops=3,
    train_jitter=(256, 320),
    # The closest of the supported protocols: the Caffe2 test started clip i of n at frame
    # floor(i * video_frames / n) and wrapped frames past the end round to the start.
    clip_spacing="video-nonlocal-net",
)
_URL = "https://dl.fbaipublicfiles.com/video-nonlocal/"
# facebookresearch/video-nonlocal-net publishes its models under the repository's Apache 2.0 licence.
_LICENSE = "Apache-2.0"
_PAPER = "Non-local Neural Networks (Wang et al., CVPR 2018), arXiv:1711.07971"
_SOURCE = (
    "accuracy: video-nonlocal-net README, Caffe2 fully-convolutional testing of 10 clips x 3 crops "
    "of 256 (pytorch-resnet3d README, its PyTorch port with global pooling, on the ~18.4k Kinetics "
    "validation videos still online: {video} with 10x3 views, {clip} with one centre clip and crop); "
    "GFLOPs: not published"
)

register(
    ModelSpec(
        name="i3d_r50_32x2",
        family="i3d_caffe2",
        cls=I3DResNet,
        arch={"non_local": False},
        input=_INPUT,
        weights={
            "kinetics400": WeightSource(
                url=_URL + "i3d_baseline_32x2_IN_pretrain_400k.pkl", format="caffe2", license=_LICENSE
            ),
        },
        metrics=Metrics(
            top1=73.6,
            top5=90.8,
            gflops=None,
            params_m=28.04,
            views="10x3",
            source=_SOURCE.format(video="72.1/90.2", clip="64.7/85.3"),
        ),
        description="I3D ResNet-50, 32 frames at stride 2, ImageNet-initialised, trained on Kinetics-400 in Caffe2",
        paper=_PAPER,
    )
)

register(
    ModelSpec(
        name="i3d_r50_nl_32x2",
        family="i3d_caffe2",
        cls=I3DResNet,
        arch={"non_local": True},
        input=_INPUT,
        weights={
            "kinetics400": WeightSource(
                url=_URL + "i3d_nonlocal_32x2_IN_pretrain_400k.pkl", format="caffe2", license=_LICENSE
            ),
        },
        metrics=Metrics(
            top1=74.9,
            top5=91.6,
            gflops=None,
            params_m=35.40,
            views="10x3",
            source=_SOURCE.format(video="73.7/91.2", clip="66.4/86.4"),
        ),
        description=(
            "I3D ResNet-50 with 5 non-local blocks (res3, res4), 32 frames at stride 2, "
            "trained on Kinetics-400 in Caffe2"
        ),
        paper=_PAPER,
    )
)
