"""The model registry: one entry per model name, holding everything the toolkit knows about it.

An entry ties a name to its family class and architecture arguments (the variant), the input the
published weights expect, where those weights live, and the figures published with them. The docs
tables, `videozoo models`, `transform_for` and `create_model` all read from here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch.nn as nn

# pytorchvideo's Kinetics normalisation (0-1 pixel scale).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
# torchvision's video models (R3D, MC3, R(2+1)D, S3D) were trained with these instead.
TORCHVISION_KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
TORCHVISION_KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class InputConfig:
    """What a clip must look like when it reaches the model at evaluation time.

    Frames are sampled `num_frames` apart by `sampling_rate` at `fps` (so one clip spans
    num_frames * sampling_rate / fps seconds), resized so the short side is `short_side` (or to the
    fixed `resize` (H, W) for the torchvision recipe), cropped to `crop_size`, scaled to
    [0, value_scale] and normalised with `mean`/`std` (given in that scale).
    """

    num_frames: int
    sampling_rate: int
    fps: float
    short_side: int
    crop_size: int
    train_crop_size: int
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    value_scale: float = 1.0
    channel_order: str = "RGB"
    resize: tuple[int, int] | None = None
    slow_alpha: int | None = None
    test_clips: int = 10
    test_crops: int = 3
    train_jitter: tuple[int, int] = (256, 320)
    # How clip starts are spread over a video in multi-clip testing (see videozoo.sampling).
    clip_spacing: str = "pyslowfast"

    @property
    def clip_seconds(self) -> float:
        return self.num_frames * self.sampling_rate / self.fps

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one eval view (the fast pathway for two-pathway models)."""
        return (3, self.num_frames, self.crop_size, self.crop_size)


@dataclass(frozen=True)
class WeightSource:
    """One downloadable checkpoint."""

    url: str
    format: str  # "pyth" | "torchvision" | "caffe2" | "pyslowfast" | "safetensors"
    sha256: str | None = None
    # Some publishers give only a hash prefix (torchvision puts 8 hex digits in the file name).
    sha256_prefix: str | None = None
    size: int | None = None
    num_classes: int = 400
    dataset: str = "kinetics400"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Metrics:
    """Figures published with the weights; `source` says where they come from."""

    top1: float | None
    top5: float | None
    gflops: float | None  # per view, one multiply-add counted as one FLOP
    params_m: float | None
    views: str  # the test protocol the accuracy was measured with, e.g. "10x3"
    source: str
    flops_note: str | None = None  # why a computed figure may differ from the published one


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    cls: Callable[..., nn.Module]
    arch: Mapping[str, Any]
    input: InputConfig
    weights: Mapping[str, WeightSource] = field(default_factory=dict)
    metrics: Metrics | None = None
    num_classes: int = 400
    description: str = ""
    paper: str = ""

    def build(self, *, num_classes: int | None = None, **overrides: Any) -> nn.Module:
        kwargs = dict(self.arch)
        kwargs.update(overrides)
        return self.cls(num_classes=num_classes or self.num_classes, **kwargs)

    @property
    def is_two_pathway(self) -> bool:
        return self.input.slow_alpha is not None

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # Family modules register their variants on import.
    import videozoo.models  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n]
        hint = f"; similar: {', '.join(sorted(close))}" if close else ""
        raise KeyError(f"unknown model {name!r}{hint}. `videozoo models` lists them all") from None
