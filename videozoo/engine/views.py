"""Decode -> views: every view a model takes of one video, from one decoding pass.

The windows of all clips are decoded in one forward pass over the video; of each window only the
frames the model keeps (``ClipTransform.select_frames``) are converted to RGB; each kept frame is
scaled to the short side once and the crops of its clip are cut from it.

Clips are taken from the frames that are there. Two kinds of file get their clips placed on a
*frame clock* (frame i at i / frame rate, as if the file had no pause) instead of on its
timestamps: a file cut short (its stream ends before the declared duration), whose last clips would
otherwise be squeezed into its final frames or find none; and a file whose timestamps pause for a
quarter of a clip or more (a paused and resumed recording, a screen recorder that writes no frame
while nothing changes), whose clips would otherwise hold a few frames on each side of the pause,
or none. Short drops of a frame or two keep the timestamps, as the reference pipelines do. Either
change is said in a ``DamagedVideoWarning`` and in the prediction's ``notes``; a video with no
frame at all stays an error.
"""

from __future__ import annotations

import math
import os
import statistics
import time
import warnings
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from videozoo.data.sampling import ClipWindow
from videozoo.data.transforms import ClipTransform
from videozoo.io import Clip, DamagedVideoWarning, EmptyWindowError, LostFrame, Video, VideoDecodeError, open_video


class ClipViews:
    """The views of a video held as its clips' kept frames (uint8, full size) until a pass takes them.

    A 10x3 evaluation of SlowFast holds 30 float32 views of 31 MB each (945 MB) once transformed, but
    only 220 MB as the uint8 frames they are made from: the engine transforms each clip when a
    micro-batch reaches it (:meth:`take`), keeping the last clip's views for the next batch.
    The views are the ones :func:`load_views` makes in one piece (the same transform per clip).
    """

    def __init__(self, clips: list[Clip], transform: ClipTransform, video_fps: float | None):
        self.clips, self.transform, self.video_fps = clips, transform, video_fps
        self.crops = transform.crops
        self._last: tuple[int, list[Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.clips) * self.crops

    def _clip(self, i: int) -> list[Tensor]:
        if self._last is None or self._last[0] != i:
            made = self.transform(self.clips[i], video_fps=self.video_fps, presampled=True)  # (crops, C, T, h, w)
            self._last = (i, made if isinstance(made, list) else [made])
        return self._last[1]

    def take(self, start: int, stop: int) -> Tensor | list[Tensor]:
        """Views ``start:stop`` (clip-major: clip i holds views i * crops ... i * crops + crops - 1)."""
        stop = min(stop, len(self))
        parts: list[list[Tensor]] = []
        for i in range(start // self.crops, (stop - 1) // self.crops + 1):
            lo, hi = max(start - i * self.crops, 0), min(stop - i * self.crops, self.crops)
            parts.append([p[lo:hi] for p in self._clip(i)])
        out = [torch.cat([part[k] for part in parts]) if len(parts) > 1 else parts[0][k] for k in range(len(parts[0]))]
        return out if self.transform.pack is not None else out[0]

    def materialize(self) -> Tensor | list[Tensor]:
        """Every view in one (V, C, T, H, W) tensor (per pathway for SlowFast)."""
        return _transform_into_one(list(self.clips), self.transform, self.video_fps)


Views = Tensor | list[Tensor] | ClipViews  # (V, C, T, H, W), [slow, fast], or clips transformed on demand


@dataclass
class VideoViews:
    """All views of one video, ready for the model, with how they were taken."""

    path: str
    views: Views
    windows: list[ClipWindow]
    crops: int
    short: bool  # the video is shorter than one clip: frames repeat to fill it
    lost_frames: int  # frames inside the windows that were damaged or could not be decoded
    decode_seconds: float
    video_fps: float = 0.0
    notes: tuple[str, ...] = ()  # how clips were taken from a cut or gapped video (also warned)

    @property
    def num_views(self) -> int:
        return len(self.windows) * self.crops


def load_views(
    path: str | os.PathLike,
    transform: ClipTransform,
    *,
    threads: int | None = None,
    frame_fps: float | None = None,
    lazy: bool = False,
    images: bool = False,
) -> VideoViews:
    """Decode the windows of ``transform``'s views in one pass over the video and transform them.

    ``frame_fps`` is the frame rate of a folder of frames (the model's fps by default). With
    ``lazy`` the views stay :class:`ClipViews` (the engine's passes transform them clip by clip).
    ``images``: a still image is scored as a one-frame clip instead of refused (``open_video``).
    """
    t0 = time.perf_counter()
    fps = frame_fps if frame_fps is not None else transform.input.fps
    with open_video(path, threads=threads, fps=fps, images=images) as video:
        if video.duration is None:  # a stream whose header gives no length: its clips cannot be placed
            raise VideoDecodeError(path, "the video's duration is unknown (neither stream nor container records it)")
        windows = transform.windows(
            video.duration, video_fps=video.fps, video_frames=getattr(video, "num_frames", None)
        )
        video_fps = video.fps

        def select(_: int, pts_sec: Tensor) -> Tensor:
            return transform.select_frames(len(pts_sec), pts_sec, video_fps)

        # Only the frames each view keeps are converted to RGB, in the order the model takes them.
        try:
            clips: list[Clip] | None = video.get_clips([(w.start_sec, w.end_sec) for w in windows], select=select)
        except EmptyWindowError:
            clips = None
        pause = 0.25 * transform.input.clip_seconds
        notes: tuple[str, ...] = ()
        cut = 0
        if clips is None or any(x.ended or (x.gap and _lost_seconds(x) >= pause) for c in clips for x in c.lost):
            # The first pass has warned of what it found (it stops without a word at an empty window).
            windows, clips, notes, cut, video_fps = _clips_on_frame_clock(video, transform, pause, warn=clips is None)
    lost_frames = cut + sum(x.count for c in clips for x in c.lost)
    views: Views = ClipViews(clips, transform, video_fps) if lazy else _transform_into_one(clips, transform, video_fps)
    return VideoViews(
        path=str(path),
        views=views,
        windows=list(windows),
        crops=transform.crops,
        short=any(w.short for w in windows),
        lost_frames=lost_frames,
        decode_seconds=time.perf_counter() - t0,
        video_fps=float(video_fps or 0.0),
        notes=notes,
    )


def _lost_seconds(lost: LostFrame) -> float:
    return lost.span[1] - lost.span[0]


def _clips_on_frame_clock(
    video: Video, transform: ClipTransform, pause: float, *, warn: bool
) -> tuple[list[ClipWindow], list[Clip], tuple[str, ...], int, float]:
    """The clips of ``transform``'s views placed over the frames that decode, on a frame clock.

    Returns the windows in stream time, their clips, one note per change, how many frames a cut
    end lost, and the frame clock's rate. ``warn``: the damage in the new windows is warned of
    (the notes always are). No warning filter is touched: servers run this in several threads.
    """
    times = [f.pts_sec for f in video.frames(warn=False)]  # one pass, no frame converted to RGB
    steps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    interval = statistics.median(steps) if steps else 1.0 / (video.fps or transform.input.fps)
    n = len(times)
    rate = 1.0 / interval
    end = times[-1] + interval
    notes, cut = [], 0
    if video.duration is not None and end < video.duration - 1.5 * interval:
        cut = round((video.duration - end) / interval)
        notes.append(
            f"the stream ends at {end:.3f} s, before its declared duration {video.duration:.3f} s "
            "(file truncated?): its clips were placed over what decodes"
        )
    pauses = [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a - interval >= pause]
    if pauses:
        a, b = max(pauses, key=lambda p: p[1] - p[0])
        notes.append(
            f"its timestamps pause {len(pauses)} time(s) (longest {b - a - interval:.3f} s, after {a:.3f} s): "
            f"its clips were placed over its {n} frames at {rate:.3f} fps, as if it had no pause"
        )
    # Frame i is at i * interval on the clock; a window on the clock takes the frames inside it.
    placed = []
    for w in transform.windows(n * interval, video_fps=rate, video_frames=n):
        i0 = min(n - 1, math.ceil(w.start_sec / interval - 1e-6))
        i1 = min(n, max(i0 + 1, math.ceil(w.end_sec / interval - 1e-6)))
        stop = (times[i1 - 1] + times[i1]) / 2 if i1 < n else times[-1] + interval / 2
        placed.append(replace(w, start_sec=times[i0], end_sec=stop))
    on_clock = {t: i * interval for i, t in enumerate(times)}

    def select(_: int, pts_sec: Tensor) -> Tensor:
        clock = torch.tensor([on_clock.get(float(t), float(t)) for t in pts_sec], dtype=torch.float64)
        return transform.select_frames(len(pts_sec), clock, rate)

    clips = video.get_clips([(w.start_sec, w.end_sec) for w in placed], select=select, warn=warn)
    for note in notes:
        warnings.warn(f"{video.path}: {note}", DamagedVideoWarning, stacklevel=3)
    return placed, clips, tuple(notes), cut, rate


def _transform_into_one(clips: list, transform: ClipTransform, video_fps: float | None) -> Tensor | list[Tensor]:
    """The views of every clip in one (V, C, T, H, W) tensor (per pathway for SlowFast).

    Each clip's views are written into their place as soon as they are made and the clip's frames
    are let go, so the peak holds the views once plus one clip, instead of every clip's views twice
    (once per clip, once concatenated: 1.9 GB for SlowFast R50 at 10x3).
    """
    out: list[Tensor] | None = None
    two_pathways = False
    crops = transform.crops
    for i in range(len(clips)):
        made = transform(clips[i], video_fps=video_fps, presampled=True)  # (crops, C, T, h, w) or [slow, fast]
        clips[i] = None  # its decoded frames are no longer needed
        parts = made if isinstance(made, list) else [made]
        if out is None:
            two_pathways = isinstance(made, list)
            out = [torch.empty((len(clips) * crops, *p.shape[1:]), dtype=p.dtype) for p in parts]
        for whole, part in zip(out, parts, strict=True):
            whole[i * crops : (i + 1) * crops] = part
        del made, parts
    assert out is not None, "a video always has at least one clip"
    return out if two_pathways else out[0]


def materialize_views(views: Views) -> Tensor | list[Tensor]:
    """The views as tensors (transforming :class:`ClipViews`)."""
    return views.materialize() if isinstance(views, ClipViews) else views


def stack_views(per_clip: list[Views]) -> Views:
    """Concatenate the views of several clips along the batch axis (per pathway for SlowFast)."""
    made = [materialize_views(v) for v in per_clip]
    if isinstance(made[0], list):
        return [torch.cat([p[i] for p in made]) for i in range(len(made[0]))]
    return torch.cat(made)  # type: ignore[arg-type]


def count_views(views: Views) -> int:
    return len(views[0]) if isinstance(views, list) else len(views)


def take_views(views: Views, start: int, stop: int) -> Tensor | list[Tensor]:
    if isinstance(views, ClipViews):
        return views.take(start, stop)
    return [v[start:stop] for v in views] if isinstance(views, list) else views[start:stop]
