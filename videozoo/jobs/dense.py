"""Dense features: one vector per window of ``clip_frames`` frames, every ``stride`` frames, per video.

The windows are placed by frame index on a *timeline*: the video's own decoded frames (frame ``i``
is the ``i``-th decoded frame), or, with ``fps``, the video resampled to that rate (frame ``j`` is
the decoded frame nearest to ``t0 + j / fps``, ties to the earlier one, for every ``j`` with
``t0 + j / fps`` before the end of the last frame; ``t0`` is the first frame's time). Window ``k``
holds timeline frames ``[k * stride, k * stride + clip_frames)``. With ``F`` timeline frames, the
number of windows is

- ``last="drop"``: only whole windows, ``max(0, floor((F - N - L) / S) + 1)``, where the lookahead
  ``L`` is 0 except in presets of extractors that read one frame past each window;
- ``last="pad"``: the windows that start before the end, up to the first that reaches it, a
  partial one filled by repeating the last frame: ``0`` for ``F = 0``, else
  ``min(ceil(F / S), ceil(max(F - N, 0) / S) + 1)`` (``N`` = clip_frames, ``S`` = stride).

Every window goes to the model whole: the ``N`` frames are its clip (resized, centre-cropped and
normalised by the engine's transform; a two-pathway model's slow pathway takes ``N / alpha`` of
them, spread evenly as the reference packs its pathways), and the engine's forward pass gives its
features. The video is read once, in order
(:meth:`videozoo.io.Video.frames`); only the frames of windows not yet complete are held, and a
frame is converted to RGB only when a window takes it, so memory does not grow with the video.

A run writes, per video, ``<name>.npy`` (float32, ``(windows, D)``) and ``<name>.json`` (model,
weights sha256, preset, timeline rate, clip length, stride, ``windows`` as ``{"start_frame",
"end_frame", "start", "end"}`` with half-open frame ranges on the timeline and seconds, and the
videozoo version), each atomically; ``index.jsonl`` records each finished video and
``manifest.json`` the run's identity (:mod:`videozoo.jobs.rundir`). A run into a folder that holds
results of the same settings keeps the finished videos and computes the rest (``--resume`` says so
explicitly); results of other settings are refused unless ``overwrite`` replaces them.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videozoo.data.datasets import VideoItem, load_video_list
from videozoo.data.input_config import InputConfig
from videozoo.data.transforms import ClipTransform
from videozoo.engine import Engine
from videozoo.engine.views import Views, count_views, stack_views
from videozoo.io import Frame, open_video
from videozoo.jobs.records import RecordWriter, read_records, repair_tail
from videozoo.jobs.rundir import (
    MANIFEST,
    ResumeMismatchError,
    RunError,
    RunLock,
    file_sha256,
    identity,
    manifest_differences,
    prepare_out,
    write_manifest,
    write_text_atomic,
)
from videozoo.models.registry import get_spec, list_models
from videozoo.models.spec import weights_word
from videozoo.weights import hub

LAST_MODES = ("pad", "drop")
DEFAULT_LAST = "pad"
# Timestamps are sums of floats: a target time within a microsecond of a midpoint counts as on it.
EPS = 1e-6


# -- the plan and its count ----------------------------------------------------------------------


@dataclass(frozen=True)
class DensePlan:
    """``clip_frames`` frames per window, one window every ``stride`` frames, on the video's own
    timeline or one resampled to ``fps``; ``last``: what happens to a partial last window.

    ``lookahead`` (``drop`` only; no command-line flag, presets set it): a window is whole only when
    that many frames follow it, as in extractors that read one frame past each window for their
    optical-flow pairs and run the RGB stream on the same windows.
    """

    clip_frames: int
    stride: int
    fps: float | None = None
    last: str = DEFAULT_LAST
    lookahead: int = 0

    def __post_init__(self) -> None:
        for flag, value in (("--clip-frames", self.clip_frames), ("--stride", self.stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} must be a whole number of frames, at least 1, got {value!r}")
        if self.fps is not None and not (
            isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0
        ):
            raise ValueError(f"--fps must be a positive number of frames per second, got {self.fps!r}")
        if self.last not in LAST_MODES:
            raise ValueError(f"--last must be one of {', '.join(LAST_MODES)}, got {self.last!r}")
        if isinstance(self.lookahead, bool) or not isinstance(self.lookahead, int) or self.lookahead < 0:
            raise ValueError(f"lookahead must be a whole number of frames, 0 or more, got {self.lookahead!r}")
        if self.lookahead and self.last != "drop":
            raise ValueError("a lookahead applies to whole windows only (last='drop')")

    def count(self, frames: int) -> int:
        """How many windows a timeline of ``frames`` frames gives (the module docstring's formula)."""
        n, s = self.clip_frames, self.stride
        if frames < 0:
            raise ValueError(f"a timeline has at least 0 frames, got {frames}")
        if self.last == "drop":
            n += self.lookahead  # a window counts as whole once its lookahead frames are there too
            return max(0, (frames - n) // s + 1) if frames >= n else 0
        if frames == 0:
            return 0
        return min(-(-frames // s), -(-max(frames - n, 0) // s) + 1)

    def ranges(self, frames: int) -> list[tuple[int, int]]:
        """``[start_frame, end_frame)`` of each window on a timeline of ``frames`` frames (real frames only)."""
        return [(k * self.stride, min(k * self.stride + self.clip_frames, frames)) for k in range(self.count(frames))]


@dataclass(frozen=True)
class Preset:
    """A published dense-feature layout: the model and plan that reproduce it, and where it is described."""

    name: str
    model: str
    clip_frames: int
    stride: int
    fps: float | None
    last: str
    source: str
    note: str = ""
    lookahead: int = 0
    crop: int | None = None  # the centre crop, where the layout's differs from the model's evaluation crop
    squash: bool = False  # frames resized to crop x crop whatever their aspect, nothing cut off
    normalize: bool = True  # False: pixels scaled to [0, 1] only, without the model's mean and std

    def plan(self) -> DensePlan:
        return DensePlan(self.clip_frames, self.stride, self.fps, self.last, self.lookahead)

    def settings(self) -> dict[str, Any]:
        """The :class:`DenseConfig` fields this preset sets."""
        keys = ("model", "clip_frames", "stride", "fps", "last", "lookahead", "crop", "squash", "normalize")
        return {k: getattr(self, k) for k in keys}


# One entry per published layout; an entry whose model is not in the registry is not offered.
PRESETS: tuple[Preset, ...] = (
    Preset(
        "video-features-i3d",
        "i3d_inception_rgb",
        64,
        64,
        None,
        "drop",
        "v-iashin/video_features, configs/i3d.yml (stack_size 64, step_size 64, extraction_fps null: the "
        "video's own frame rate) and models/i3d/extract_i3d.py (a stack runs once it is full; a partial "
        "last stack is not run)",
        "the RGB stream only: video_features also computes a flow stream (PWC-Net or RAFT flow into the flow "
        "I3D), which this preset does not. video_features runs a stack once the frame after it has been "
        "read (its flow pairs), for the RGB stream too: the preset's lookahead of 1 gives the same count",
        lookahead=1,
    ),
    Preset(
        "actionformer-thumos-i3d",
        "i3d_inception_rgb",
        16,
        4,
        30.0,
        "drop",
        "happyharrycn/actionformer_release, README (THUMOS14 features: two-stream I3D on clips of 16 frames "
        "at the video frame rate, ~30 fps, with a stride of 4 frames, one vector per 4/30 s) and "
        "configs/thumos_i3d.yaml (num_frames 16, feat_stride 4, input_dim 2048)",
        "the RGB half only: the released features concatenate the RGB and flow I3D streams (2048-d); this "
        "preset gives the 1024-d RGB part. Videos are resampled to 30 fps so that the step is 4/30 s "
        "exactly (at 30 fps nothing changes). The last partial window is dropped (a choice: the source "
        "does not say)",
    ),
    Preset(
        "opentad-slowfast-r50",
        "slowfast_r50",
        32,
        4,
        None,
        "pad",
        "OpenTAD (sming256/OpenTAD), tools/prepare_data/thumos/README.md: the THUMOS14 slowfast_r50 features, "
        "SlowFast-R50-8x8x1 with snippet_stride=4, clip_length=32, frame_interval=1; 2304-d (2048 slow + "
        "256 fast, each pathway average-pooled)",
        "a centre 224 crop of the 256 short side, where each pathway's last map is exactly the head's "
        "pooling window, so its feature is the plain average over the map (at the zoo's 256 test crop the "
        "head would average four overlapping windows instead); the source gives neither the crop nor what "
        "happens to the last partial window (padded here); not compared with OpenTAD's released files",
        crop=224,
    ),
    Preset(
        "videomaev2-tad",
        "videomaev2_b_k710",
        16,
        4,
        None,
        "drop",
        "OpenTAD (sming256/OpenTAD), tools/prepare_data/thumos/README.md: the THUMOS14 videomaev2_g features, "
        "VideoMAEv2-g-K710-16x4x1 with snippet_stride=4, clip_length=16, frame_interval=1, made by "
        "OpenGVLab/VideoMAEv2's extract_tad_feature.py (docs/TAD.md): clips of 16 consecutive frames starting "
        "at range(0, frames - 15, 4), pixels scaled to [0, 1] and squashed to 224x224 (bilinear, no crop, no "
        "mean/std normalisation), forward_features (the fc_norm of the mean over all tokens)",
        "ViT-B distilled from ViT-g on Kinetics-710 (vit_b_k710_dl_from_giant, the largest VideoMAE V2 in the "
        "zoo, 768-d) in place of the ViT-g the released features used (1408-d): the same recipe, another "
        "backbone. Whole windows only, as the source's range() gives them",
        squash=True,
        normalize=False,
    ),
)


def presets() -> dict[str, Preset]:
    """The presets whose model the registry holds, by name."""
    known = set(list_models())
    return {p.name: p for p in PRESETS if p.model in known}


def get_preset(name: str) -> Preset:
    table = presets()
    if name not in table:
        raise ValueError(f"--preset {name!r}: unknown preset; choose from {', '.join(sorted(table))}")
    return table[name]


# -- the timeline --------------------------------------------------------------------------------


@dataclass
class TimelineFrame:
    """Frame ``index`` of the timeline, at ``time`` seconds, showing the decoded ``frame``."""

    index: int
    time: float
    frame: Frame


def native_timeline(frames: Iterable[Frame]) -> Iterator[TimelineFrame]:
    """The decoded frames in order: timeline frame ``i`` is the ``i``-th decoded frame."""
    for i, f in enumerate(frames):
        yield TimelineFrame(i, float(f.pts_sec), f)


def resampled_timeline(frames: Iterable[Frame], fps: float, frame_interval: float | None) -> Iterator[TimelineFrame]:
    """The video at ``fps``: frame ``j`` at ``t0 + j / fps`` shows the decoded frame nearest that time
    (ties to the earlier), for every ``j`` before the end of the last frame (its time plus
    ``frame_interval``, or the last gap between frames when None). Frames whose time does not
    increase are skipped. Streams: one decoded frame is held besides the one being placed."""
    prev: Frame | None = None
    t0 = 0.0
    gap = None
    j = 0
    for f in frames:
        t = float(f.pts_sec)
        if prev is None:
            prev, t0 = f, t
            continue
        if t <= prev.pts_sec:
            continue
        gap = t - prev.pts_sec
        mid = (prev.pts_sec + t) / 2
        while t0 + j / fps <= mid + EPS:
            yield TimelineFrame(j, t0 + j / fps, prev)
            j += 1
        prev = f
    if prev is None:
        return
    end = prev.pts_sec + (frame_interval or gap or 1.0 / fps)
    while t0 + j / fps < end - EPS:
        yield TimelineFrame(j, t0 + j / fps, prev)
        j += 1


# -- windows over the timeline -------------------------------------------------------------------


@dataclass
class DenseWindow:
    """Window ``index``: timeline frames ``[start_frame, end_frame)`` (real ones), ``frames`` its whole
    clip (the last one repeated where the window reaches past the end), and seconds."""

    index: int
    start_frame: int
    end_frame: int
    start: float
    end: float
    frames: list[Frame] = field(repr=False)

    def record(self) -> dict[str, Any]:
        return {
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start": round(self.start, 6),
            "end": round(self.end, 6),
        }


class WindowStream:
    """Windows of a :class:`DensePlan` over a timeline fed in order (``push``, then ``finish``).

    Holds only the timeline frames that a window not yet handed out takes, so at most
    ``clip_frames`` of them. ``interval``: the length of one timeline frame in seconds (ends the
    last window's span).
    """

    def __init__(self, plan: DensePlan, interval: float):
        self.plan = plan
        self.interval = interval
        self._held: deque[TimelineFrame] = deque()
        self._next = 0  # index of the next window
        self.frames = 0  # timeline frames seen
        self.peak_held = 0

    def _wanted(self, j: int) -> bool:
        n, s = self.plan.clip_frames, self.plan.stride
        return j >= self._next * s and (s <= n or j % s < n)

    def push(self, tf: TimelineFrame) -> list[DenseWindow]:
        self.frames = tf.index + 1
        if self._wanted(tf.index):
            self._held.append(tf)
            self.peak_held = max(self.peak_held, len(self._held))
        out = []
        n, s, ahead = self.plan.clip_frames, self.plan.stride, self.plan.lookahead
        while self._next * s + n + ahead <= self.frames:
            out.append(self._window(self._next * s, self._next * s + n))
        return out

    def finish(self) -> list[DenseWindow]:
        """The partial windows at the end (``pad``), once the timeline has ended."""
        out = []
        while self._next < self.plan.count(self.frames):
            start = self._next * self.plan.stride
            out.append(self._window(start, min(start + self.plan.clip_frames, self.frames)))
        return out

    def _window(self, start: int, end: int) -> DenseWindow:
        taken = [tf for tf in self._held if start <= tf.index < end]
        assert len(taken) == end - start, "a window's frames were let go before it was complete"
        frames = [tf.frame for tf in taken]
        frames += [frames[-1]] * (self.plan.clip_frames - len(frames))  # pad: the last frame repeated
        window = DenseWindow(self._next, start, end, taken[0].time, taken[-1].time + self.interval, frames)
        self._next += 1
        low = self._next * self.plan.stride
        while self._held and self._held[0].index < low:
            self._held.popleft()
        return window


# -- one video -----------------------------------------------------------------------------------


@dataclass
class DenseResult:
    features: np.ndarray  # (windows, D) float32
    windows: list[dict[str, Any]]
    frames: int  # timeline frames
    fps: float  # timeline rate
    video_fps: float
    lost_frames: int
    peak_frames_held: int


def check_clip_frames(engine: Engine, clip_frames: int) -> None:
    """Refuse a clip length the model cannot take, before any video is decoded."""
    spec = get_spec(engine.model_name)
    cfg = engine.input
    if getattr(spec.cls, "fixed_input_size", False) and clip_frames != cfg.num_frames:
        raise ValueError(
            f"--clip-frames {clip_frames}: {engine.model_name} takes clips of exactly {cfg.num_frames} frames"
        )
    if cfg.slow_alpha and clip_frames % cfg.slow_alpha:
        raise ValueError(
            f"--clip-frames {clip_frames}: {engine.model_name}'s slow pathway takes one frame in "
            f"{cfg.slow_alpha}; use a multiple of {cfg.slow_alpha}"
        )
    # A shape pass on the meta device (no arithmetic) finds clips too short for the network's strides.
    with torch.device("meta"):
        model = spec.build(num_classes=1).eval()
        x = torch.zeros(1, 3, clip_frames, cfg.crop_size, cfg.crop_size)  # (B, C, T, H, W)
        clip: Any = x
        if cfg.slow_alpha:
            clip = [x[:, :, :: cfg.slow_alpha], x]
        try:
            model.forward_features(clip)
        except Exception as e:
            raise ValueError(
                f"--clip-frames {clip_frames}: {engine.model_name} cannot take {clip_frames}-frame clips "
                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
            ) from None


def window_views(engine: Engine | DenseDecoder, window: DenseWindow, video_fps: float | None) -> Views:
    """The window's clip through the engine's transform: (1, C, N, crop, crop), or [slow, fast]."""
    first = window.frames[0].rgb().numpy()  # (C, H, W) uint8, contiguous
    # Plain block copies in numpy, in this thread: a torch copy of a few small uint8 frames wakes
    # the intra-op thread pool, which on a busy machine costs more than the whole transform.
    x = np.empty((3, len(window.frames), *first.shape[1:]), dtype=np.uint8)  # (C, N, H, W)
    for i, f in enumerate(window.frames):
        x[:, i] = f.rgb().numpy()
    return engine.transform(torch.from_numpy(x), video_fps=video_fps, presampled=True)


def windows_per_batch(engine: Engine, clip_frames: int) -> int:
    """The engine's views per forward pass, scaled from its model's clip length to ``clip_frames``."""
    return max(1, engine.batch_size * engine.input.num_frames // clip_frames)


@dataclass
class DenseDecoder:
    """The decoding side of an engine: what turns a video into window views, without the model.

    Built from an :class:`Engine` (``from_engine``) so that a process without the model (a Ray
    decoding task) transforms windows exactly as the engine's own process would.
    """

    input: InputConfig
    transform: ClipTransform
    threads: int | None = None

    @classmethod
    def from_engine(cls, engine: Engine, threads: int | None = None) -> DenseDecoder:
        return cls(engine.input, engine.transform, threads)


@dataclass
class DenseDecode:
    """What one pass over a video found besides its windows (filled once the pass has ended)."""

    frames: int = 0  # timeline frames
    fps: float = 0.0  # timeline rate
    video_fps: float = 0.0
    lost_frames: int = 0
    peak_frames_held: int = 0


def window_batches(
    decoder: Engine | DenseDecoder, path: str | os.PathLike, plan: DensePlan, batch: int, info: DenseDecode
) -> Iterator[list[tuple[DenseWindow, Views]]]:
    """The windows of one video with their views, ``batch`` views at a time (the last batch may be
    smaller), read once in order; ``info`` is filled when the generator ends."""
    pending: list[tuple[DenseWindow, Views]] = []
    threads = decoder.threads
    with open_video(path, threads=threads, fps=decoder.input.fps) as video:
        video_fps = float(video.fps or 0.0)
        lost = 0

        def decoded() -> Iterator[Frame]:
            nonlocal lost
            for f in video.frames():
                lost += sum(x.count for x in f.lost if not x.kept)
                yield f

        if plan.fps is not None:
            timeline = resampled_timeline(decoded(), plan.fps, 1.0 / video_fps if video_fps else None)
            interval = 1.0 / plan.fps
        else:
            timeline = native_timeline(decoded())
            interval = 1.0 / video_fps if video_fps else 0.0
        stream = WindowStream(plan, interval)

        def add(w: DenseWindow) -> None:
            views = window_views(decoder, w, video_fps or None)
            w.frames = []  # the clip is in its views now; the frames go once no other window holds them
            pending.append((w, views))

        for tf in timeline:
            for w in stream.push(tf):
                add(w)
                if sum(count_views(v) for _, v in pending) >= batch:
                    yield list(pending)
                    pending.clear()
        for w in stream.finish():
            add(w)
        if pending:
            yield list(pending)
    info.frames = stream.frames
    info.fps = plan.fps if plan.fps is not None else video_fps
    info.video_fps = video_fps
    info.lost_frames = lost
    info.peak_frames_held = stream.peak_held


def dense_features(
    engine: Engine,
    path: str | os.PathLike,
    plan: DensePlan,
    *,
    threads: int | None = None,
    batch_size: int | None = None,
) -> DenseResult:
    """The dense features of one video, read once in order (see the module docstring).

    batch_size: windows per forward pass (default: the engine's, scaled to the window length).
    """
    batch = batch_size or windows_per_batch(engine, plan.clip_frames)
    rows = FeatureRows()
    records: list[dict[str, Any]] = []
    info = DenseDecode()
    for pending in window_batches(DenseDecoder.from_engine(engine, threads), path, plan, batch, info):
        feats = engine.forward(stack_views([v for _, v in pending]), "features")  # (windows, D)
        rows.append(feats.float().numpy())
        records.extend(w.record() for w, _ in pending)
    return dense_result(plan, info, rows.parts(), records, int(getattr(engine.model, "num_features", 0)))


class FeatureRows:
    """A video's feature rows, appended a forward batch at a time into one float32 buffer that
    doubles when full.

    Kept as one small array per batch instead, the rows of a long video would be thousands of small
    heap blocks left among the forward passes' freed transient blocks; the heap then cannot reuse
    those (measured: an hour of video peaked 1.8x higher than a minute with the OpenVINO backend).
    A buffer that doubles is a few blocks whatever the length.
    """

    def __init__(self) -> None:
        self._buf: np.ndarray | None = None  # (capacity, D) float32
        self.count = 0

    def append(self, feats: np.ndarray) -> None:
        k, dim = feats.shape
        if self._buf is None:
            self._buf = np.empty((max(k, 256), dim), np.float32)
        elif self.count + k > len(self._buf):
            grown = np.empty((max(2 * len(self._buf), self.count + k), dim), np.float32)
            grown[: self.count] = self._buf[: self.count]
            self._buf = grown
        self._buf[self.count : self.count + k] = feats
        self.count += k

    def parts(self) -> list[np.ndarray]:
        """The rows as a list of (windows, D) arrays (one, or none for a video without windows)."""
        return [] if self._buf is None else [self._buf[: self.count]]


def dense_result(
    plan: DensePlan, info: DenseDecode, rows: list[np.ndarray], records: list[dict[str, Any]], dim: int
) -> DenseResult:
    """One video's result from its feature rows ((windows, D) arrays in window order), checked
    against the formula; ``dim``: the feature width where the video has no window."""
    dim = rows[0].shape[1] if rows else dim
    feats = np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)
    expected = plan.count(info.frames)
    assert len(feats) == expected == len(records), f"{len(feats)} windows where the formula gives {expected}"
    return DenseResult(
        features=feats.astype(np.float32, copy=False),
        windows=records,
        frames=info.frames,
        fps=info.fps,
        video_fps=info.video_fps,
        lost_frames=info.lost_frames,
        peak_frames_held=info.peak_frames_held,
    )


# -- the job -------------------------------------------------------------------------------------


@dataclass
class DenseConfig:
    model: str
    out: str
    clip_frames: int
    stride: int
    fps: float | None = None
    last: str = DEFAULT_LAST
    lookahead: int = 0  # set by presets (see DensePlan)
    crop: int | None = None  # set by presets: a centre crop other than the model's evaluation crop
    squash: bool = False  # set by presets: frames resized to crop x crop (aspect not kept), not cropped
    normalize: bool = True  # set by presets: False feeds pixels in [0, 1] without the model's mean and std
    preset: str | None = None
    data: str | None = None
    videos: list[str] | None = None
    weights: str | None = "kinetics400"
    precision: str = "auto"
    device: str = "cpu"
    batch_size: int | None = None
    threads: int | None = None
    resume: bool = False  # what a run does anyway: finished videos of the same settings are kept
    overwrite: bool = False  # replace the results of a run with other settings in `out`
    wait: bool = False
    parquet: bool = False  # also write the run's windows as one table, OUT/features.parquet

    def __post_init__(self) -> None:
        self.weights = weights_word(self.weights)  # "none" is None, as on the command line

    @property
    def plan(self) -> DensePlan:
        return DensePlan(self.clip_frames, self.stride, self.fps, self.last, self.lookahead)


def build_engine(cfg: DenseConfig) -> Engine:
    """The engine of the run: the model's own transform, or the preset's (``cfg.crop``, ``cfg.squash``,
    ``cfg.normalize``)."""
    options: dict[str, Any] = {"device": cfg.device, "precision": cfg.precision, "batch_size": cfg.batch_size}
    if cfg.crop is None and not cfg.squash and cfg.normalize:
        return Engine.build(cfg.model, weights=cfg.weights, **options)
    from videozoo.models.factory import create_model

    model = create_model(cfg.model, weights=cfg.weights)
    inp = model.input_config or get_spec(cfg.model).input
    model.input_config = preset_input(inp, cfg)
    return Engine(model, inplace=True, **options)


def preset_input(inp: InputConfig, cfg: DenseConfig) -> InputConfig:
    """The model's input config with a preset's changes: another centre crop; frames squashed to the
    crop (every frame resized to crop x crop, unrounded, so the crop takes it whole); pixels in [0, 1]."""
    crop = cfg.crop or inp.crop_size
    if not cfg.squash and not 0 < crop <= inp.short_side:
        raise ValueError(f"crop {crop}: must be between 1 and the short side {inp.short_side} of {cfg.model}")
    if cfg.squash and crop < 1:
        raise ValueError(f"crop {crop}: must be at least 1")
    changes: dict[str, Any] = {"crop_size": crop}
    if cfg.squash:
        changes.update(resize=(crop, crop), resize_rounded=False)
    if not cfg.normalize:
        changes.update(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), value_scale=1.0, channel_order="RGB")
    return replace(inp, **changes)


def output_names(items: list[VideoItem]) -> list[str]:
    """Each video's output name (its file name without the extension); two videos of one name are an error."""
    seen: dict[str, str] = {}
    names = []
    for item in items:
        name = Path(item.path.rstrip("/")).stem or Path(item.path).name
        if name == MANIFEST.removesuffix(".json"):
            raise ValueError(
                f"{item.path}: its output name {name!r} would overwrite the run's {MANIFEST}; rename the file"
            )
        if name in seen:
            raise ValueError(
                f"{item.path}: has the output name {name!r} of {seen[name]} too; dense features are written "
                "as <name>.npy per video: rename one, or run them into different --out folders"
            )
        seen[name] = item.path
        names.append(name)
    return names


def extract_dense(cfg: DenseConfig) -> dict[str, Any]:
    """Run the dense features of every video of ``cfg`` into ``cfg.out`` (resumable)."""
    plan, items, names = check_config(cfg)
    out = prepare_out(cfg.out)  # a bad --out fails before the model is loaded
    engine = build_engine(cfg)
    check_clip_frames(engine, plan.clip_frames)
    with RunLock(out, wait=cfg.wait):
        return _run(cfg, plan, engine, items, names, out)


def check_config(cfg: DenseConfig) -> tuple[DensePlan, list[VideoItem], list[str]]:
    """The run's plan, videos and output names, every flag checked (nothing is loaded or written)."""
    plan = cfg.plan  # flags are checked before anything else
    get_spec(cfg.model)
    if not cfg.data and not cfg.videos:
        raise ValueError("give a dataset spec (--data) or video files")
    if cfg.resume and cfg.overwrite:
        raise ValueError("--overwrite: replaces the results that --resume would continue; give one of them")
    if cfg.resume and cfg.weights is None:
        raise ValueError(
            "--resume with random weights (--weights none): each run draws other weights, so the "
            "features would not belong together; save the model (videozoo.save_model) and pass the file"
        )
    if cfg.parquet:
        check_parquet()
    if cfg.data:
        items = load_video_list(cfg.data).items
    else:
        items = [VideoItem(str(v), None) for v in cfg.videos or []]
    return plan, items, output_names(items)


def _run(
    cfg: DenseConfig, plan: DensePlan, engine: Engine, items: list[VideoItem], names: list[str], out: Path
) -> dict[str, Any]:
    run = open_run(cfg, plan, engine, items, names, out)
    computed = windows = 0
    with RecordWriter(run.index_path) as index:
        for i in run.todo:
            path = items[i].path
            try:
                result = dense_features(engine, path, plan, threads=cfg.threads, batch_size=cfg.batch_size)
            except Exception as e:  # one bad video never stops the run
                write_video(run, index, i, None, error_text(path, e))
                continue
            windows += write_video(run, index, i, result, None)
            computed += 1
    return run.finish(computed, windows)


def error_text(path: str, e: BaseException) -> str:
    """A failed video's error entry: the exception's type and message, naming the video."""
    reason = str(e) if path in str(e) else f"{path}: {e}"
    return f"{type(e).__name__}: {reason}"


@dataclass
class DenseRun:
    """A run's output folder, checked and prepared: its identity and the videos still to compute."""

    cfg: DenseConfig
    plan: DensePlan
    out: Path
    ident: dict[str, Any]
    items: list[VideoItem]
    names: list[str]
    todo: list[int]  # positions in ``items``
    crop: int
    precision: str
    dim: int = 0  # the model's feature width (the table's vector width where no video is finished)

    @property
    def index_path(self) -> Path:
        return self.out / "index.jsonl"

    def finish(self, computed: int, windows: int) -> dict[str, Any]:
        """The run's summary, once every video is written; the Parquet table first where asked."""
        summary = self.summary(computed, windows)
        if self.cfg.parquet:
            summary["table"] = str(write_table(self))
        return summary

    def summary(self, computed: int, windows: int) -> dict[str, Any]:
        latest = {r["name"]: r for r in read_records(self.index_path) if r.get("name")}
        return {
            "videos": len(self.items),
            "computed": computed,
            "skipped": len(self.items) - len(self.todo),
            "failed": sum(1 for name in self.names if latest.get(name, {}).get("error")),
            "windows": windows,
            "out": str(self.out),
        }


def open_run(
    cfg: DenseConfig,
    plan: DensePlan,
    engine: Engine,
    items: list[VideoItem],
    names: list[str],
    out: Path,
    *,
    precision: str | None = None,
) -> DenseRun:
    """Check ``out`` against this run's identity (refusing other settings), start it afresh where
    asked, and find the videos not yet finished. ``precision``: the one the model runs in, where
    that is not ``engine``'s (a run whose model runs elsewhere)."""
    index_path = out / "index.jsonl"
    precision = precision or engine.precision.name
    ident = identity(
        model=cfg.model,
        weights=None,  # replaced below: the file the weights key resolves to, packaged ones too
        # Each video's output stands alone: another list of videos may go into the same folder (a
        # finished video is recognised by its path and output name, below).
        data_sha="not part of the identity: one output per video",
        dense=asdict(plan),
        crop=engine.input.crop_size,
        squash=cfg.squash,
        normalize=cfg.normalize,
        preset=cfg.preset,
        precision=precision,
    )
    ident["weights_sha256"] = weights_sha256(cfg.model, cfg.weights)
    previous = index_path.exists() or (out / MANIFEST).exists()
    if previous and not cfg.overwrite:
        # The same settings go on where the last run stopped; other settings are refused.
        differences = manifest_differences(out, ident, job="dense-features")
        if differences:
            raise ResumeMismatchError(
                f"--out {out}: holds results of a run with other settings; pass --overwrite to replace "
                "them, or choose another --out:\n  " + "\n  ".join(differences)
            )
        if cfg.weights is None:
            raise ValueError(
                f"--out {out}: holds features of random weights (--weights none), which another run "
                "cannot continue (it draws other weights); pass --overwrite to start afresh"
            )
    else:
        for earlier in read_records(index_path):
            for suffix in (".npy", ".json"):
                if earlier.get("name"):
                    (out / f"{earlier['name']}{suffix}").unlink(missing_ok=True)
        index_path.unlink(missing_ok=True)
        write_manifest(out, ident, job="dense-features", about={"weights": cfg.weights, "data": cfg.data})
    repair_tail(index_path)
    # The latest record of each output name: a video that failed before is tried again.
    latest = {r["name"]: r for r in read_records(index_path) if r.get("name")}
    for item, name in zip(items, names, strict=True):
        prior = latest.get(name)
        if prior is not None and prior["video"] != item.path and not prior.get("error"):
            raise ValueError(
                f"{item.path}: {out / (name + '.npy')} already holds the features of {prior['video']}; rename "
                "the file, choose another --out, or pass --overwrite to start the folder afresh"
            )
    done = {
        name
        for name, r in latest.items()
        if not r.get("error") and (out / f"{name}.npy").exists() and (out / f"{name}.json").exists()
    }
    todo = [i for i in range(len(items)) if names[i] not in done]
    dim = int(getattr(engine.model, "num_features", 0))
    return DenseRun(cfg, plan, out, ident, items, names, todo, engine.input.crop_size, precision, dim)


def write_video(run: DenseRun, index: RecordWriter, i: int, result: DenseResult | None, error: str | None) -> int:
    """Write video ``i``'s features and sidecar (each atomically), then its index line; or, with
    ``error``, only its error line. Returns the windows written."""
    cfg, plan, out = run.cfg, run.plan, run.out
    path, name = run.items[i].path, run.names[i]
    rec: dict[str, Any] = {"index": i, "video": path, "name": name, "error": error}
    if result is None:
        assert error is not None, "a video has a result or an error"
        index.write(rec)
        return 0
    sidecar = {
        "video": path,
        "model": cfg.model,
        "weights": cfg.weights,
        "weights_sha256": run.ident["weights_sha256"],
        "preset": cfg.preset,
        "fps": result.fps,
        "video_fps": result.video_fps,
        "resampled": plan.fps is not None,
        "clip_frames": plan.clip_frames,
        "stride": plan.stride,
        "last": plan.last,
        "lookahead": plan.lookahead,
        "crop": run.crop,
        "squash": cfg.squash,
        "normalize": cfg.normalize,
        "frames": result.frames,
        "dim": int(result.features.shape[1]),
        "precision": run.precision,
        "lost_frames": result.lost_frames,
        "windows": result.windows,
        "videozoo_version": run.ident["videozoo_version"],
    }
    try:
        _save_npy(out / f"{name}.npy", result.features)
        write_text_atomic(out / f"{name}.json", json.dumps(sidecar, indent=1) + "\n")
        rec["windows"] = len(result.windows)
        index.write(rec)
    except OSError as e:
        raise RunError(
            f"{out}: cannot write ({e.strerror or e}) after {index.written} of the {len(run.todo)} videos of "
            "this run; the finished videos are kept: free space and continue with --resume"
        ) from e
    return len(result.windows)


def weights_sha256(model: str, weights: str | os.PathLike | None) -> str | None:
    """The sha256 of the file that ``create_model(model, weights=weights)`` reads (None: random weights)."""
    spec = get_spec(model)
    choice = spec.resolve_weights(weights)
    if choice.random:
        return None
    if choice.key is not None:
        path = hub.fetch(spec.weights[choice.key], progress=False)  # already there: the engine has loaded it
    else:
        assert choice.path is not None
        path = choice.path
    return file_sha256(path)


def _save_npy(path: Path, feats: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
    try:
        np.save(tmp, feats)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- the run as one table --------------------------------------------------------------------------

TABLE = "features.parquet"


def check_parquet() -> None:
    """Refuse --parquet, before anything runs, where pyarrow is not installed."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ValueError("--parquet: needs pyarrow, which is not installed (pip install 'videozoo[parquet]')") from None


def write_table(run: DenseRun) -> Path:
    """OUT/features.parquet: one row per window of every video of the run that has its features
    (computed now or before), in the run's order: ``video``, ``name``, ``window`` (its index in the
    video), ``start_frame``, ``end_frame``, ``start``, ``end`` (as in the sidecar) and ``vector``
    (float32, fixed size D). The run's identity is the schema's ``videozoo`` metadata (JSON). Read
    from the per-video files one video at a time, written to a temporary file, then renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = run.out
    latest = {r["name"]: r for r in read_records(run.index_path) if r.get("name")}
    finished = [
        (item.path, name)
        for item, name in zip(run.items, run.names, strict=True)
        if name in latest and not latest[name].get("error") and (out / f"{name}.npy").exists()
    ]
    dim = run.dim
    if finished:
        dim = int(np.load(out / f"{finished[0][1]}.npy", mmap_mode="r").shape[1])
    schema = pa.schema(
        [
            ("video", pa.string()),
            ("name", pa.string()),
            ("window", pa.int32()),
            ("start_frame", pa.int64()),
            ("end_frame", pa.int64()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("vector", pa.list_(pa.float32(), dim)),
        ],
        metadata={"videozoo": json.dumps(run.ident)},
    )
    path = out / TABLE
    tmp = out / f".features.tmp{os.getpid()}.parquet"
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for video, name in finished:
                feats = np.load(out / f"{name}.npy")  # (windows, D) float32
                windows = json.loads((out / f"{name}.json").read_text())["windows"]
                if feats.shape != (len(windows), dim):
                    raise RunError(
                        f"{out / (name + '.npy')}: holds {feats.shape[0]}x{feats.shape[1]} features where its "
                        f"sidecar lists {len(windows)} windows of {dim}; run again with --overwrite"
                    )
                columns = {
                    "video": [video] * len(windows),
                    "name": [name] * len(windows),
                    "window": np.arange(len(windows), dtype=np.int32),
                    **{key: [w[key] for w in windows] for key in ("start_frame", "end_frame", "start", "end")},
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1), pa.float32()), dim),
                }
                writer.write_table(pa.table(columns, schema=schema))
        os.replace(tmp, path)
    except OSError as e:
        raise RunError(f"{path}: cannot write the table ({e.strerror or e}); the per-video files are kept") from e
    finally:
        tmp.unlink(missing_ok=True)
    return path
