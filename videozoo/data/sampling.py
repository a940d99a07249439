"""Where in a video the clips are taken: clip windows in seconds.

A model sees a clip of ``num_frames`` frames taken every ``sampling_rate`` frames at ``fps``, so a
clip spans ``clip_seconds = num_frames * sampling_rate / fps`` of video. The samplers here return
the windows ``[start_sec, end_sec)`` of that span to decode; the frames the video's own frame rate
puts in a window are then brought to ``num_frames`` by temporal subsampling
(:class:`videozoo.data.transforms.UniformTemporalSubsample`).

Test-time spacing follows the evaluation protocol of each model family (``InputConfig.clip_spacing``):

``"pyslowfast"``
    PySlowFast's ``get_start_end_idx`` and pytorchvideo's ``ConstantClipsPerVideoSampler`` (the
    two agree): with ``delta = max(duration - clip_seconds, 0)``, clip ``i`` of ``n`` starts at
    ``delta * i / n``. The last clip therefore stops ``delta / n`` short of the end of the video.
``"pyslowfast_offset"``
    PySlowFast with ``DATA.USE_OFFSET_SAMPLING`` (used by its MViT configs), which counts frames:
    with ``delta = max(video_fps * (duration - clip_seconds), 0)`` frames, clip ``i`` starts at
    frame ``i * floor(delta / (n - 1))`` (``floor(delta / 2)`` when ``n == 1``).
``"video-nonlocal-net"``
    the Caffe2 test of video-nonlocal-net (the I3D baselines): with ``N`` frames, clip ``i`` of
    ``n`` starts at frame ``int(float32(N / n) * i)``, whatever the clip length. Clips running past
    the end wrap around to the first frames there; here they take the frames that exist instead,
    repeated to fill the clip by the subsampling.
``"torchvision"``
    torchvision's video reference (``VideoClips`` with ``step_between_clips=1`` and
    ``UniformClipSampler``): the video's ``N`` frames are resampled to ``fps`` by taking frame
    ``floor(k * video_fps / fps)`` for ``k < M = floor(N * fps / video_fps)`` (every
    ``video_fps / fps``-th frame, ``M = ceil(N * fps / video_fps)``, when that step is an integer);
    every run of ``num_frames * sampling_rate`` consecutive resampled frames is a candidate clip
    (``L = M - num_frames * sampling_rate + 1`` of them), and clip ``i`` is candidate
    ``floor(i * (L - 1) / (n - 1))`` (float32 ``linspace``, as torchvision computes it).

A video shorter than one clip still gives full-length windows starting at 0, flagged
``short=True``; subsampling then repeats frames to fill the clip (torchvision's reference would skip
such a video; the pyslowfast protocols keep it the same way).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch

from videozoo.data.input_config import InputConfig
from videozoo.data.plan import ViewPlan

__all__ = [
    "ClipWindow",
    "ViewPlan",
    "as_plan",
    "SPACINGS",
    "center",
    "constant_clips_per_video",
    "is_single_view",
    "parse_views",
    "random",
    "sliding",
    "uniform",
    "windows_for",
]

SPACINGS = ("pyslowfast", "pyslowfast_offset", "video-nonlocal-net", "torchvision")

Seconds = float | Fraction


@dataclass(frozen=True)
class ClipWindow:
    """One window ``[start_sec, end_sec)`` of a video to decode for one clip.

    ``index`` is the clip's position among the video's clips, ``aug_index`` tells apart repeated
    views of one clip (pytorchvideo's ``augs_per_clip``), ``num_clips`` is how many clips the
    sampler made, and ``short`` says the video is shorter than the window, so the decoded frames do
    not fill it. A window unpacks as ``(start_sec, end_sec)``, which is what
    ``Video.get_clips`` takes.
    """

    start_sec: float
    end_sec: float
    index: int = 0
    num_clips: int = 1
    aug_index: int = 0
    short: bool = False

    @property
    def duration(self) -> float:
        return self.end_sec - self.start_sec

    def __iter__(self) -> Iterator[float]:
        return iter((self.start_sec, self.end_sec))


def _window(
    start: Seconds, clip: Seconds, duration: Seconds, index: int, num_clips: int, aug_index: int = 0
) -> ClipWindow:
    return ClipWindow(
        start_sec=float(start),
        end_sec=float(start + clip),
        index=index,
        num_clips=num_clips,
        aug_index=aug_index,
        short=bool(duration < clip),
    )


def _check(duration: Seconds, clip_seconds: Seconds) -> tuple[Fraction, Fraction]:
    if not duration > 0:
        raise ValueError(f"video duration must be positive, got {duration!r}")
    if not clip_seconds > 0:
        raise ValueError(f"clip length must be positive, got {clip_seconds!r}")
    return Fraction(duration), Fraction(clip_seconds)


def center(duration: Seconds, clip_seconds: Seconds) -> list[ClipWindow]:
    """One window centred in the video: start ``max(duration - clip_seconds, 0) / 2``."""
    d, c = _check(duration, clip_seconds)
    return [_window(max(d - c, 0) / 2, c, d, 0, 1)]


def random(duration: Seconds, clip_seconds: Seconds, *, generator: torch.Generator | None = None) -> list[ClipWindow]:
    """One training window, start uniform in ``[0, max(duration - clip_seconds, 0)]``.

    As pytorchvideo's ``RandomClipSampler`` and PySlowFast's ``clip_idx=-1``, but drawn from
    ``generator`` (torch's default generator when None) so that runs can be repeated.
    """
    d, c = _check(duration, clip_seconds)
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return [_window(float(max(d - c, 0)) * u, c, d, 0, 1)]


def constant_clips_per_video(
    duration: Seconds, clip_seconds: Seconds, num_clips: int, *, augs_per_clip: int = 1
) -> list[ClipWindow]:
    """pytorchvideo's ``ConstantClipsPerVideoSampler``: ``num_clips`` starts ``delta * i / num_clips``.

    ``delta = max(duration - clip_seconds, 0)``. Each clip is returned ``augs_per_clip`` times with
    ``aug_index`` 0, 1, ... (the reference uses the aug index to pick the spatial crop).
    """
    d, c = _check(duration, clip_seconds)
    if num_clips < 1 or augs_per_clip < 1:
        raise ValueError("num_clips and augs_per_clip must be at least 1")
    step = max(d - c, 0) / num_clips
    return [_window(step * i, c, d, i, num_clips, a) for i in range(num_clips) for a in range(augs_per_clip)]


def uniform(
    duration: Seconds,
    clip_seconds: Seconds,
    num_clips: int,
    *,
    spacing: str = "pyslowfast",
    fps: float | None = None,
    video_fps: float | None = None,
    video_frames: int | None = None,
) -> list[ClipWindow]:
    """``num_clips`` test windows spread over the video as the family's protocol spreads them.

    ``spacing`` is one of :data:`SPACINGS` (formulas in the module docstring). The frame-counting
    protocols need the video's frame rate ``video_fps``; ``"torchvision"`` also needs the model's
    ``fps``. ``"torchvision"`` and ``"video-nonlocal-net"`` count the video's frames: ``video_frames``,
    by default ``round(duration * video_fps)``.
    """
    d, c = _check(duration, clip_seconds)
    if num_clips < 1:
        raise ValueError("num_clips must be at least 1")
    if spacing == "pyslowfast":
        return constant_clips_per_video(d, c, num_clips)
    if video_fps is None or not video_fps > 0:
        raise ValueError(f"{spacing!r} spacing counts frames: pass the video's frame rate as video_fps")
    if spacing == "pyslowfast_offset":
        delta = max(video_fps * float(d - c), 0.0)
        if num_clips == 1:
            starts = [math.floor(delta / 2)]
        else:
            starts = [i * math.floor(delta / (num_clips - 1)) for i in range(num_clips)]
        return [_window(Fraction(s) / Fraction(video_fps), c, d, i, num_clips) for i, s in enumerate(starts)]
    if spacing == "video-nonlocal-net":
        n_video = video_frames if video_frames is not None else round(float(d) * video_fps)
        gap = torch.tensor(n_video, dtype=torch.float32) / num_clips  # the reference computes in float32
        starts = (gap * torch.arange(num_clips, dtype=torch.float32)).to(torch.int64) % max(n_video, 1)
        return [_window(Fraction(s) / Fraction(video_fps), c, d, i, num_clips) for i, s in enumerate(starts.tolist())]
    if spacing == "torchvision":
        if fps is None:
            raise ValueError("'torchvision' spacing resamples the video to the model's fps: pass fps")
        return _torchvision_windows(d, c, num_clips, fps, video_fps, video_frames)
    raise ValueError(f"unknown clip spacing {spacing!r}; expected one of {SPACINGS}")


def _torchvision_windows(
    d: Fraction, c: Fraction, num_clips: int, fps: float, video_fps: float, video_frames: int | None
) -> list[ClipWindow]:
    n_video = video_frames if video_frames is not None else round(float(d) * video_fps)
    step = video_fps / fps
    if float(step).is_integer():
        # torchvision then slices every step-th frame, which keeps ceil(N / step) of them.
        n_resampled = len(range(0, n_video, int(step)))
    else:
        n_resampled = int(math.floor(n_video * fps / video_fps))
    clip_frames = round(float(c) * fps)
    candidates = n_resampled - clip_frames + 1
    if candidates < 1:
        return [_window(0, c, d, i, num_clips) for i in range(num_clips)]
    picked = torch.linspace(0, candidates - 1, steps=num_clips).floor().to(torch.int64)
    if float(step).is_integer():
        first = picked * int(step)
    else:
        first = (picked.to(torch.float32) * step).floor().to(torch.int64)
    windows = []
    for i, f in enumerate(first.tolist()):
        windows.append(_window(Fraction(f) / Fraction(video_fps), c, d, i, num_clips))
    return windows


def sliding(
    duration: Seconds, clip_seconds: Seconds, *, stride: Seconds | None = None, backpad_last: bool = False
) -> list[ClipWindow]:
    """pytorchvideo's ``UniformClipSampler``: consecutive windows ``stride`` apart (default: no overlap).

    Windows start at ``0, stride, 2 * stride, ...`` while they end within the video (the first one
    always). With ``backpad_last`` one more window, moved back to end at the end of the video,
    covers the frames the others leave out.
    """
    d, c = _check(duration, clip_seconds)
    s = c if stride is None else Fraction(stride)
    if not 0 < s <= c:
        raise ValueError(f"stride must be in (0, clip_seconds], got {stride!r}")

    def place(start: Fraction) -> Fraction:
        if backpad_last:
            start = max(start - max(0, start + c - d), 0)
        return start

    starts = [place(Fraction(0))]
    while True:
        nxt = place(starts[-1] + s)
        if backpad_last:
            if abs((nxt + c) - (starts[-1] + c)) < Fraction(1, 10**6):
                break
        elif nxt + c > d:
            break
        starts.append(nxt)
    n = len(starts)
    return [_window(st, c, d, i, n) for i, st in enumerate(starts)]


def parse_views(
    views: str | ViewPlan | tuple[int, int] | Sequence[int], input_config: InputConfig | None = None
) -> tuple[int, int]:
    """``"10x3"`` or ``(10, 3)`` -> ``(clips, crops)``; ``"published"`` -> the config's test views."""
    plan = as_plan(views, input_config)
    return plan.clips, plan.crops


def as_plan(
    views: str | ViewPlan | tuple[int, int] | Sequence[int], input_config: InputConfig | None = None
) -> ViewPlan:
    """A resolved :class:`ViewPlan` from a plan, ``"NxM"``/``"published"`` or a ``(clips, crops)`` pair."""
    plan = ViewPlan.parse(views if isinstance(views, (str, ViewPlan)) else (int(views[0]), int(views[1])))
    if not plan.resolved:
        if input_config is None:
            raise ValueError("'published' views need the model's InputConfig")
        plan = plan.resolve(input_config)
    return plan


def is_single_view(views: str | ViewPlan | tuple[int, int] | Sequence[int]) -> bool:
    """True for the model cards' quick look, ``"1x1"`` / ``(1, 1)``: one centred clip, centre crop.

    ``"published"`` is never a single view, even where the published protocol has one clip and
    one crop: it means the reference protocol itself (e.g. torchvision's first clip for s3d).
    """
    plan = ViewPlan.parse(views if isinstance(views, (str, ViewPlan)) else (int(views[0]), int(views[1])))
    return plan.single_view


def windows_for(
    input_config: InputConfig,
    duration: Seconds,
    views: str | ViewPlan | tuple[int, int] = "1x1",
    mode: str = "test",
    generator: torch.Generator | None = None,
    *,
    video_fps: float | None = None,
    video_frames: int | None = None,
) -> list[ClipWindow]:
    """The windows a model with ``input_config`` is evaluated (or trained) on for one video.

    ``mode="train"``: one random window (:func:`random`). ``mode="test"``: ``"1x1"`` is the model
    cards' single view, the centred window (:func:`center`); any other ``views`` (``"10x3"``,
    ``(5, 1)``, ``"published"`` for the config's own ``test_clips x test_crops``) spreads the clips
    with the config's ``clip_spacing`` (:func:`uniform`); the frame-counting spacings need
    ``video_fps``. The crops of each view are cut by the transform
    (:func:`videozoo.data.transforms.transform_for`), not here.
    """
    clip = Fraction(input_config.num_frames * input_config.sampling_rate) / Fraction(input_config.fps)
    if mode == "train":
        return random(duration, clip, generator=generator)
    if mode != "test":
        raise ValueError(f"mode must be 'test' or 'train', got {mode!r}")
    plan = as_plan(views, input_config)
    if plan.single_view:
        return center(duration, clip)
    return uniform(
        duration,
        clip,
        plan.clips,
        spacing=input_config.clip_spacing,
        fps=input_config.fps,
        video_fps=video_fps,
        video_frames=video_frames,
    )
