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
    per_clip = [transform(c, video_fps=video_fps, presampled=True) for c in clips]  # (crops, C, T, h, w) each
    views = stack_views(per_clip)
    return VideoViews(
        path=str(path),
        views=views,
        windows=list(windows),
        crops=transform.crops,
        short=any(w.short for w in windows),
        lost_frames=sum(len(c.lost) for c in clips),
        decode_seconds=time.perf_counter() - t0,
        video_fps=float(video_fps or 0.0),
    )


def stack_views(per_clip: list[Views]) -> Views:
    """Concatenate the views of several clips along the batch axis (per pathway for SlowFast)."""
    if isinstance(per_clip[0], list):
        return [torch.cat([p[i] for p in per_clip]) for i in range(len(per_clip[0]))]
    return torch.cat(per_clip)  # type: ignore[arg-type]


def count_views(views: Views) -> int:
    return len(views[0]) if isinstance(views, list) else len(views)


def take_views(views: Views, start: int, stop: int) -> Views:
    return [v[start:stop] for v in views] if isinstance(views, list) else views[start:stop]
