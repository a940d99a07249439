"""Decode -> views: every view a model takes of one video, from one decoding pass.

The windows of all clips are decoded in one forward pass over the video; of each window only the
frames the model keeps (``ClipTransform.select_frames``) are converted to RGB; each kept frame is
scaled to the short side once and the crops of its clip are cut from it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from videozoo.data.sampling import ClipWindow
from videozoo.data.transforms import ClipTransform
from videozoo.io import VideoDecodeError, open_video

Views = Tensor | list[Tensor]  # (V, C, T, H, W), or [slow, fast] for two-pathway models


@dataclass
class VideoViews:
    """All views of one video, ready for the model, with how they were taken."""

    path: str
    views: Views
    windows: list[ClipWindow]
    crops: int
    short: bool  # the video is shorter than one clip: frames repeat to fill it
    lost_frames: int  # frames inside the windows that could not be decoded
    decode_seconds: float
    video_fps: float = 0.0

    @property
    def num_views(self) -> int:
        return len(self.windows) * self.crops


def load_views(
    path: str | os.PathLike,
    transform: ClipTransform,
    *,
    threads: int | None = None,
    frame_fps: float | None = None,
) -> VideoViews:
    """Decode the windows of ``transform``'s views in one pass over the video and transform them.

    ``frame_fps`` is the frame rate of a folder of frames (the model's fps by default).
    """
    t0 = time.perf_counter()
    with open_video(path, threads=threads, fps=frame_fps if frame_fps is not None else transform.input.fps) as video:
        if video.duration is None:  # a stream whose header gives no length: its clips cannot be placed
            raise VideoDecodeError(path, "the video's duration is unknown (neither stream nor container records it)")
        windows = transform.windows(
            video.duration, video_fps=video.fps, video_frames=getattr(video, "num_frames", None)
        )
        video_fps = video.fps

        def select(_: int, pts_sec: Tensor) -> Tensor:
            return transform.select_frames(len(pts_sec), pts_sec, video_fps)

        # Only the frames each view keeps are converted to RGB, in the order the model takes them.
        clips = video.get_clips([(w.start_sec, w.end_sec) for w in windows], select=select)
    lost_frames = sum(len(c.lost) for c in clips)
    views = _transform_into_one(clips, transform, video_fps)
    return VideoViews(
        path=str(path),
        views=views,
        windows=list(windows),
        crops=transform.crops,
        short=any(w.short for w in windows),
        lost_frames=lost_frames,
        decode_seconds=time.perf_counter() - t0,
        video_fps=float(video_fps or 0.0),
    )


def _transform_into_one(clips: list, transform: ClipTransform, video_fps: float) -> Views:
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


def stack_views(per_clip: list[Views]) -> Views:
    """Concatenate the views of several clips along the batch axis (per pathway for SlowFast)."""
    if isinstance(per_clip[0], list):
        return [torch.cat([p[i] for p in per_clip]) for i in range(len(per_clip[0]))]
    return torch.cat(per_clip)  # type: ignore[arg-type]


def count_views(views: Views) -> int:
    return len(views[0]) if isinstance(views, list) else len(views)


def take_views(views: Views, start: int, stop: int) -> Views:
    return [v[start:stop] for v in views] if isinstance(views, list) else views[start:stop]
