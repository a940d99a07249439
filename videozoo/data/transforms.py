"""Tensor transforms for video clips, and each model's exact input pipeline.

Every transform works on a clip tensor laid out ``(C, T, H, W)`` (channels, frames, height, width);
spatial and value transforms also accept a stack of views ``(V, C, T, H, W)``. Frames come from the
decoder as uint8 RGB. The pipelines keep them uint8 through temporal subsampling and channel
reordering, so only the frames a model sees are ever converted to float.

:func:`transform_for` builds, from a model's registry entry, the transform that turns one decoded
clip into the views the model is evaluated (or trained) on:

* pytorchvideo / PySlowFast recipe: uniform temporal subsampling, short side scaled to
  ``short_side`` (bilinear), then one centre crop (``"1x1"``) or the three crops along the long
  side (``"Nx3"``), scaled to ``[0, value_scale]`` and normalised, then packed into
  ``[slow, fast]`` for two-pathway models.
* torchvision recipe (``InputConfig.resize`` set): every frame resized to the fixed ``resize``
  ``(H, W)`` with the result rounded to integers as torchvision does for uint8 video (kept float
  with ``resize_rounded=False``), a centre crop, then scaled and normalised.

The reference applies normalisation before the resize; both are linear per channel and the
bilinear weights sum to one, so resizing first gives the same values (to float32 rounding) while
touching fewer pixels. See docs/transforms.md for the formulas and the measured differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.data.plan import ViewPlan
from videozoo.data.sampling import SPACINGS, ClipWindow, as_plan, windows_for

__all__ = [
    "CenterCrop",
    "ClipTransform",
    "Compose",
    "Normalize",
    "PackPathway",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomShortSideScale",
    "ReverseChannels",
    "Resize",
    "ShortSideScale",
    "ToFloat",
    "UniformCrop",
    "UniformTemporalSubsample",
    "resampled_indices",
    "short_side_size",
    "temporal_indices",
    "transform_for",
]

Views = Tensor | list[Tensor]


# --- temporal -------------------------------------------------------------------------------------


def temporal_indices(
    available: int,
    num_samples: int,
    *,
    mode: str = "linspace",
    span: int | None = None,
    step: float | None = None,
) -> Tensor:
    """Indices of the ``num_samples`` frames to keep out of ``available`` decoded frames.

    ``mode="linspace"`` (pytorchvideo ``UniformTemporalSubsample``, PySlowFast
    ``temporal_sampling``): ``linspace(0, span - 1, num_samples)`` truncated towards zero and
    clamped to the available frames. ``span`` defaults to ``available``, which spreads the samples
    over whatever was decoded (pytorchvideo; frames repeat when there are fewer than
    ``num_samples``); PySlowFast passes the frame count the full window should hold, so that a
    clip cut short by the end of the video repeats its last frame instead.

    ``mode="stride"`` (torchvision's frame-rate resampling, video-nonlocal-net's sampling rate):
    ``floor(m * step)``, clamped to the available frames, with ``step`` the number of video frames
    per kept frame (``video_fps * sampling_rate / fps``); by default ``available / num_samples``.
    """
    if available < 1 or num_samples < 1:
        raise ValueError(f"cannot take {num_samples} frames out of {available}")
    if mode == "linspace":
        last = (span if span is not None else available) - 1
        idx = torch.linspace(0, last, num_samples)
        return torch.clamp(idx, 0, available - 1).long()
    if mode == "stride":
        m = torch.arange(num_samples, dtype=torch.float64)
        idx = m * (step if step is not None else available / num_samples)
        return torch.clamp(idx.floor(), 0, available - 1).long()
    raise ValueError(f"unknown temporal sampling mode {mode!r}")


def resampled_indices(frame_numbers: Tensor, num_samples: int, step: float) -> Tensor:
    """Positions of torchvision's frame-rate resampling among decoded frames.

    torchvision resamples a whole video by keeping frame ``floor(k * step)`` for k = 0, 1, ...
    (``step = video_fps / fps``; float32 when it is not an integer). ``frame_numbers`` are the
    video frame numbers of the decoded frames, ascending (``round(pts_sec * video_fps)``). The
    result takes the ``num_samples`` grid frames from the first at or after the first decoded
    frame, as positions into the decoded frames; a grid frame that was not decoded is replaced by
    the next decoded one (the last at the end of the window).
    """
    first = int(frame_numbers[0])
    if float(step).is_integer():
        k0 = -(-first // int(step))
        wanted = (k0 + torch.arange(num_samples)) * int(step)
    else:
        # The smallest k whose grid frame is not before the first decoded frame.
        k = torch.arange(max(math.floor(first / step) - 1, 0), first + 2, dtype=torch.float32)
        k0 = int(k[(k * step).floor() >= first][0])
        wanted = ((k0 + torch.arange(num_samples, dtype=torch.float32)) * step).floor().long()
    pos = torch.searchsorted(frame_numbers.contiguous(), wanted)
    return pos.clamp(max=frame_numbers.numel() - 1)


class UniformTemporalSubsample:
    """(C, T, H, W) -> (C, num_frames, H, W): keep ``num_frames`` evenly spaced frames (any dtype).

    See :func:`temporal_indices` for ``mode`` and ``step`` (given per call: it depends on the
    video's frame rate).
    """

    def __init__(self, num_frames: int, mode: str = "linspace"):
        self.num_frames = num_frames
        self.mode = mode

    def __call__(self, x: Tensor, step: float | None = None) -> Tensor:
        idx = temporal_indices(x.shape[-3], self.num_frames, mode=self.mode, step=step)
        return x.index_select(-3, idx.to(x.device))

    def __repr__(self) -> str:
        return f"UniformTemporalSubsample({self.num_frames}, mode={self.mode!r})"


class PackPathway:
    """(..., C, T, H, W) -> [slow (..., C, T // alpha, H, W), fast (..., C, T, H, W)].

    The slow pathway keeps frames ``linspace(0, T - 1, T // alpha)`` (truncated), as PySlowFast's
    ``pack_pathway_output``.
    """

    def __init__(self, alpha: int):
        self.alpha = alpha

    def __call__(self, x: Tensor) -> list[Tensor]:
        t = x.shape[-3]
        idx = torch.linspace(0, t - 1, t // self.alpha).long().to(x.device)
        return [x.index_select(-3, idx), x]

    def __repr__(self) -> str:
        return f"PackPathway(alpha={self.alpha})"


# --- values ---------------------------------------------------------------------------------------


class ReverseChannels:
    """(..., C, T, H, W) -> same shape, channels reversed (RGB <-> BGR); any dtype."""

    def __call__(self, x: Tensor) -> Tensor:
        return x.flip(-4)

    def __repr__(self) -> str:
        return "ReverseChannels()"


class ToFloat:
    """Any dtype -> float32, values unchanged (uint8 frames stay in 0..255)."""

    def __call__(self, x: Tensor) -> Tensor:
        return x.to(torch.float32)

    def __repr__(self) -> str:
        return "ToFloat()"


class Normalize:
    """(..., C, T, H, W) float in 0..255 -> ``(x * value_scale / 255 - mean) / std`` per channel.

    ``mean``/``std`` are given in the ``value_scale`` range: ``value_scale=1`` for models fed
    ``[0, 1]`` (pytorchvideo, torchvision), ``255`` for the Caffe2 models fed raw 0..255 values.
    Computed as one multiply-add with the factors folded in double precision; it differs from the
    step-by-step reference by float32 rounding only.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], value_scale: float = 1.0):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.value_scale = float(value_scale)
        divisor = 255.0 / self.value_scale
        self._scale = tuple(1.0 / (divisor * s) for s in self.std)
        self._shift = tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))

    def __call__(self, x: Tensor) -> Tensor:
        if not x.is_floating_point():
            raise TypeError(f"Normalize needs a float tensor, got {x.dtype}")
        shape = (len(self.mean), 1, 1, 1)  # broadcast over (T, H, W)
        scale = torch.tensor(self._scale, dtype=x.dtype, device=x.device).view(shape)
        shift = torch.tensor(self._shift, dtype=x.dtype, device=x.device).view(shape)
        return torch.addcmul(shift, x, scale)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std}, value_scale={self.value_scale:g})"


# --- spatial size ---------------------------------------------------------------------------------


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side ``size`` and the long side ``floor(long / short * size)``.

    The exact expression of pytorchvideo's ``short_side_scale`` (and PySlowFast's scale jitter),
    evaluated in double precision in the same order.
    """
    if width < height:
        return int(math.floor((float(height) / width) * size)), size
    return size, int(math.floor((float(width) / height) * size))


def _bilinear(x: Tensor, size: tuple[int, int], *, frames_first: bool = False) -> Tensor:
    # interpolate takes (N, C, H, W); every (H, W) plane is resized on its own.
    if frames_first and x.dim() == 4:
        # A (C, T, H, W) clip laid out as torchvision's video recipe resizes it: T images of C
        # channels. On one thread, F.interpolate's kernels for different channel counts differ in
        # the last bit, and where the result is rounded to integers that moves a tie by one level.
        out = F.interpolate(x.transpose(0, 1), size=size, mode="bilinear", align_corners=False, antialias=False)
        return out.transpose(0, 1).contiguous()
    lead = x.shape[:-2]
    planes = x.reshape(-1, 1, *x.shape[-2:]) if x.dim() != 4 else x
    out = F.interpolate(planes, size=size, mode="bilinear", align_corners=False, antialias=False)
    return out.reshape(*lead, *size)


def _resize(x: Tensor, size: tuple[int, int], quantize: bool) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.is_floating_point():
        if quantize:
            return _bilinear(x, size, frames_first=True).round()
        return _bilinear(x, size)
    # uint8 in, uint8 out, rounded: what torchvision's resize does for uint8 tensors.
    return _bilinear(x.to(torch.float32), size, frames_first=True).round().to(x.dtype)


class ShortSideScale:
    """(..., T, H, W) -> (..., T, h, w) with the short side ``size`` (see :func:`short_side_size`).

    Bilinear, ``align_corners=False``, no antialiasing, as pytorchvideo's ``ShortSideScale``.
    Float input gives float output; uint8 input gives rounded uint8 output.
    """

    def __init__(self, size: int):
        self.size = size

    def __call__(self, x: Tensor) -> Tensor:
        return _resize(x, short_side_size(x.shape[-2], x.shape[-1], self.size), quantize=False)

    def __repr__(self) -> str:
        return f"ShortSideScale({self.size})"


class Resize:
    """(..., T, H, W) -> (..., T, size[0], size[1]): fixed-size bilinear resize, no antialiasing.

    The torchvision video recipe resizes uint8 frames, so its values are rounded to integers before
    scaling: uint8 input is rounded back to uint8, and ``quantize=True`` rounds float input the same
    way (torch.round, half to even), keeping float.
    """

    def __init__(self, size: tuple[int, int], quantize: bool = False):
        self.size = (int(size[0]), int(size[1]))
        self.quantize = quantize

    def __call__(self, x: Tensor) -> Tensor:
        return _resize(x, self.size, quantize=self.quantize)

    def __repr__(self) -> str:
        return f"Resize({self.size}, quantize={self.quantize})"


class RandomShortSideScale:
    """(..., T, H, W) -> short side scaled to an integer drawn uniformly from ``[min_size, max_size]``."""

    def __init__(self, min_size: int, max_size: int, generator: torch.Generator | None = None):
        self.min_size, self.max_size = min_size, max_size
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        size = int(torch.randint(self.min_size, self.max_size + 1, (1,), generator=self.generator))
        return ShortSideScale(size)(x)

    def __repr__(self) -> str:
        return f"RandomShortSideScale({self.min_size}, {self.max_size})"


# --- crops ----------------------------------------------------------------------------------------


def _crop(x: Tensor, top: int, left: int, size: int) -> Tensor:
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"cannot crop {size}x{size} out of {h}x{w} frames")
    return x[..., top : top + size, left : left + size]


class CenterCrop:
    """(..., H, W) -> (..., size, size) centred, offsets ``round((H - size) / 2)`` (half to even).

    torchvision's ``center_crop`` (used by the pytorchvideo model cards and torchvision's video
    weights); PySlowFast's middle crop rounds up instead, see :class:`UniformCrop`.
    """

    def __init__(self, size: int):
        self.size = size

    def __call__(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return _crop(x, int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0)), self.size)

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class UniformCrop:
    """(..., H, W) -> (..., size, size): crop ``index`` of three spread along the long side.

    Index 0, 1, 2 = start, middle, end of the long side (left/centre/right for landscape frames,
    top/centre/bottom for portrait); the other side is centred.

    ``style="pyslowfast"``: PySlowFast's ``uniform_crop`` and pytorchvideo's ``UniformCropVideo``;
    centred offsets are ``ceil((side - size) / 2)`` and the end crop starts at ``side - size``.
    ``style="caffe2"``: video-nonlocal-net's test crops; with ``off = floor((side - size) / 2)`` on
    both sides, crop ``i`` moves the height offset to ``i * off`` when the height has room to move,
    otherwise the width offset.
    """

    def __init__(self, size: int, index: int = 1, style: str = "pyslowfast"):
        if index not in (0, 1, 2):
            raise ValueError(f"uniform crop index must be 0, 1 or 2, got {index}")
        if style not in ("pyslowfast", "caffe2"):
            raise ValueError(f"unknown uniform crop style {style!r}")
        self.size = size
        self.index = index
        self.style = style

    def __call__(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.style == "caffe2":
            top, left = (h - self.size) // 2, (w - self.size) // 2
            if top > 0:
                top *= self.index
            else:
                left *= self.index
            return _crop(x, top, left, self.size)
        top = int(math.ceil((h - self.size) / 2))
        left = int(math.ceil((w - self.size) / 2))
        if self.index != 1:
            if h > w:
                top = 0 if self.index == 0 else h - self.size
            else:
                left = 0 if self.index == 0 else w - self.size
        return _crop(x, top, left, self.size)

    def __repr__(self) -> str:
        style = "" if self.style == "pyslowfast" else f", style={self.style!r}"
        return f"UniformCrop({self.size}, index={self.index}{style})"


class RandomCrop:
    """(..., H, W) -> (..., size, size) at an offset drawn uniformly from every valid position."""

    def __init__(self, size: int, generator: torch.Generator | None = None):
        self.size = size
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        top = int(torch.randint(0, h - self.size + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, w - self.size + 1, (1,), generator=self.generator))
        return _crop(x, top, left, self.size)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomHorizontalFlip:
    """(..., H, W) -> same shape, mirrored left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = p
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        if float(torch.rand((), generator=self.generator)) < self.p:
            return x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Tensor], Tensor]]):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


# --- a model's pipeline ---------------------------------------------------------------------------


class ClipTransform:
    """One decoded clip -> the views a model takes, as its reference pipeline makes them.

    Call it with uint8 RGB frames ``(C, T, H, W)`` of one window (or a decoded ``Clip``, whose
    ``frames`` are used). It returns float32 views ``(V, C, num_frames, crop, crop)`` with
    ``V = crops``, or ``[slow, fast]`` of that layout for two-pathway models (slow has
    ``num_frames // slow_alpha`` frames). The clip is resized once and the crops are cut from it.

    ``"1x1"`` is the model cards' single view: the centred window and torchvision's centre crop.
    Any other views follow the family's test protocol (``InputConfig.clip_spacing``): PySlowFast's
    or video-nonlocal-net's uniform crops, torchvision's centre crop; ``"published"`` is the
    protocol the model's accuracy was measured with. Training: random short-side scale in
    ``train_jitter`` (or the fixed ``resize``), random ``train_crop_size`` crop, random flip.

    Attributes: ``input`` (the model's InputConfig), ``views`` (e.g. ``"10x3"``), ``clips``
    (windows per video: see :meth:`windows`), ``crops`` (views per clip), ``single_view``,
    ``train``, ``crop_size``, and the steps (``temporal``, ``channels``, ``resize``, ``crop_ops``,
    ``flip``, ``normalize``, ``pack``) for inspection.
    """

    def __init__(
        self,
        input_config: InputConfig,
        views: str | ViewPlan | tuple[int, int] = "1x1",
        *,
        train: bool = False,
        generator: torch.Generator | None = None,
    ):
        cfg = input_config
        if cfg.clip_spacing not in SPACINGS:
            raise ValueError(f"unknown clip spacing {cfg.clip_spacing!r}; expected one of {SPACINGS}")
        if cfg.channel_order.upper() not in ("RGB", "BGR"):
            raise ValueError(f"unknown channel order {cfg.channel_order!r}")
        self.input = cfg
        self.train = train
        self.generator = generator
        # The plan is resolved here once; "published" becomes the config's own test views.
        self.plan = ViewPlan(1, 1) if train else as_plan(views, cfg)
        self.single_view = train or self.plan.single_view
        self.clips, self.crops = self.plan.clips, self.plan.crops
        self.views = str(self.plan)

        # PySlowFast/pytorchvideo spread the kept frames over the decoded window with linspace;
        # torchvision and video-nonlocal-net step through it at a fixed frame interval.
        linspace = cfg.clip_spacing.startswith("pyslowfast")
        self.temporal = UniformTemporalSubsample(cfg.num_frames, mode="linspace" if linspace else "stride")
        self.channels = ReverseChannels() if cfg.channel_order.upper() == "BGR" else None
        self.normalize = Normalize(cfg.mean, cfg.std, cfg.value_scale)
        self.pack = PackPathway(cfg.slow_alpha) if cfg.slow_alpha else None
        self.flip: RandomHorizontalFlip | None = None
        self.resize: Resize | RandomShortSideScale | ShortSideScale
        self.crop_ops: list[Callable[[Tensor], Tensor]]

        if train:
            self.crop_size = cfg.train_crop_size
            if cfg.resize is not None:
                self.resize = Resize(cfg.resize)
            else:
                self.resize = RandomShortSideScale(*cfg.train_jitter, generator=generator)
            self.crop_ops = [RandomCrop(cfg.train_crop_size, generator=generator)]
            self.flip = RandomHorizontalFlip(0.5, generator=generator)
            return

        self.crop_size = cfg.crop_size
        if cfg.resize is not None:
            self.resize = Resize(cfg.resize, quantize=cfg.resize_rounded)
        else:
            self.resize = ShortSideScale(cfg.short_side)
        style = "caffe2" if cfg.clip_spacing == "video-nonlocal-net" else "pyslowfast"
        if self.crops == 3:
            self.crop_ops = [UniformCrop(cfg.crop_size, i, style) for i in range(3)]
        elif self.single_view or cfg.clip_spacing == "torchvision":
            # The model cards' single view and torchvision's evaluation: torchvision's centre crop.
            self.crop_ops = [CenterCrop(cfg.crop_size)]
        else:
            # The multi-clip, single-crop tests of PySlowFast and Caffe2 take their middle crop.
            self.crop_ops = [UniformCrop(cfg.crop_size, 1, style)]

    def __call__(self, frames, *, video_fps: float | None = None, presampled: bool = False) -> Views:
        """Views of one clip (uint8 ``(C, T, H, W)`` frames, or a decoded ``Clip``).

        ``video_fps``, the video's frame rate, matters to the recipes that step through the frames
        (torchvision, video-nonlocal-net): it fixes the step (``video_fps * sampling_rate / fps``
        video frames) even where the end of the video cuts the window short, and with a ``Clip``
        (whose ``pts_sec`` give the frame numbers) the torchvision recipe takes exactly the frames
        of torchvision's whole-video resampling grid. Without it the step is the decoded frame
        count / ``num_frames``. ``presampled=True`` says the frames are already the ones
        :meth:`select_frames` picks (the decoder converted only those), so no frame is dropped here.
        """
        x = getattr(frames, "frames", frames)
        if x.dim() != 4:
            raise ValueError(f"expected one clip (C, T, H, W), got shape {tuple(x.shape)}")
        if not presampled:
            idx = self.select_frames(x.shape[-3], getattr(frames, "pts_sec", None), video_fps)
            x = x.index_select(-3, idx.to(x.device))  # (C, num_frames, H, W), still uint8
        if self.channels is not None:
            x = self.channels(x)
        x = self.resize(x.to(torch.float32))  # (C, T, h, w)
        if len(self.crop_ops) == 1:
            x = self.normalize(self.crop_ops[0](x)).unsqueeze(0)
        else:
            # Normalising the resized clip once is cheaper than normalising overlapping crops.
            x = self.normalize(x)
            x = torch.stack([crop(x) for crop in self.crop_ops])  # (V, C, T, crop, crop)
        if self.flip is not None:
            x = self.flip(x)
        return self.pack(x) if self.pack is not None else x

    def select_frames(self, available: int, pts_sec: Tensor | None = None, video_fps: float | None = None) -> Tensor:
        """Positions of the ``num_frames`` frames this model keeps out of ``available`` decoded ones.

        ``pts_sec`` are the decoded frames' timestamps (ascending); the torchvision recipe uses
        them with ``video_fps`` to take the frames of its whole-video resampling grid.
        """
        if video_fps is None or self.temporal.mode != "stride":
            return temporal_indices(available, self.input.num_frames, mode=self.temporal.mode)
        video_fps = float(video_fps)
        step = video_fps * self.input.sampling_rate / self.input.fps
        if self.input.clip_spacing == "torchvision" and pts_sec is not None and len(pts_sec) == available:
            numbers = torch.round(torch.as_tensor(pts_sec, dtype=torch.float64) * video_fps).long()
            return resampled_indices(numbers, self.input.num_frames, step)
        return temporal_indices(available, self.input.num_frames, mode="stride", step=step)

    def windows(
        self,
        duration: float,
        *,
        video_fps: float | None = None,
        video_frames: int | None = None,
    ) -> list[ClipWindow]:
        """The windows to decode for one video, for these views (see :func:`videozoo.data.sampling.windows_for`)."""
        return windows_for(
            self.input,
            duration,
            self.plan,
            mode="train" if self.train else "test",
            generator=self.generator,
            video_fps=video_fps,
            video_frames=video_frames,
        )

    @property
    def steps(self) -> list[Callable]:
        steps = [
            self.temporal,
            self.channels,
            ToFloat(),
            self.resize,
            *self.crop_ops,
            self.normalize,
            self.flip,
            self.pack,
        ]
        return [s for s in steps if s is not None]

    def __repr__(self) -> str:
        inner = "".join(f"\n    {s!r}," for s in self.steps)
        mode = "train" if self.train else self.views
        return f"ClipTransform({mode}, steps=[{inner}\n])"


def transform_for(
    model: InputConfig | Any,
    views: str | ViewPlan | tuple[int, int] = "1x1",
    train: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> ClipTransform:
    """The eval (or, with ``train=True``, training) transform for an input config.

    ``model`` is an ``InputConfig`` or anything carrying one as ``.input`` (a registry entry);
    :func:`videozoo.transform_for` also takes a registry name. ``views`` is ``"1x1"`` (the model
    cards' single centred clip and centre crop), ``"10x3"``, any ``"NxK"`` with K in {1, 3}, a
    ``(clips, crops)`` pair, a :class:`~videozoo.data.plan.ViewPlan`, or ``"published"`` for the views the model's accuracy was measured
    with. Training transforms draw from ``generator``.
    """
    cfg = model if isinstance(model, InputConfig) else model.input
    return ClipTransform(cfg, views, train=train, generator=generator)
