"""Action timeline of a long video or a live stream: windows scored over time, smoothed into segments.

    result = videozoo.timeline("match.mp4", model="x3d_xs", out="timeline-output")
    for s in result.segments:
        print(f"{s.start:7.2f} {s.end:7.2f}  {s.label}")

    run = videozoo.timeline_stream("-", model="x3d_xs")      # windows as they are computed
    for w in run:
        print(w.start, w.top_k[0].label)                     # react live; run.stop() to end
    result = run.result()

Files: ``timeline.json``, ``timeline.csv``, ``timeline.png`` and, for files, ``overlay.mp4``
(see docs/timeline.md for their format, the smoothing and the window placement).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from videozoo.engine import Engine
from videozoo.jobs.timeline.result import LabelScore, Segment, TimelineResult, TimelineWindow
from videozoo.jobs.timeline.run import TimelineRun, window_plan
from videozoo.jobs.timeline.segments import find_segments, smooth_scores
from videozoo.jobs.timeline.windows import WindowFiller, WindowPlan

__all__ = [
    "LabelScore",
    "Segment",
    "TimelineResult",
    "TimelineRun",
    "TimelineWindow",
    "WindowFiller",
    "WindowPlan",
    "find_segments",
    "make_engine",
    "smooth_scores",
    "timeline",
    "timeline_stream",
    "window_plan",
]


def make_engine(
    model: Any = "slow_r50",
    *,
    weights: str | os.PathLike | None = "kinetics400",
    views: Any = "1x1",
    device: str = "cpu",
    precision: str = "auto",
    batch_size: int | None = None,
) -> Engine:
    """An :class:`Engine` from a registry name or a model (an engine is returned as it is)."""
    if isinstance(model, Engine):
        return model
    if isinstance(model, str):
        return Engine.build(
            model, weights=weights, views=views, device=device, precision=precision, batch_size=batch_size
        )
    return Engine(model, views=views, device=device, precision=precision, batch_size=batch_size)


def timeline_stream(
    video: str | os.PathLike,
    *,
    model: Any = "slow_r50",
    weights: str | os.PathLike | None = "kinetics400",
    views: Any = "1x1",
    window: float | None = None,
    stride: float | None = None,
    top_k: int = 5,
    device: str = "cpu",
    precision: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    format: str | None = None,
    max_latency: float | None = None,
) -> TimelineRun:
    """Windows of ``video`` (a file, ``"-"`` for standard input, a URL or a camera) as they are scored.

    ``model`` is a registry name, a model or an :class:`Engine`. ``window`` and ``stride`` are in
    seconds (default: the model's clip duration and half of it). ``views`` ``"CxK"`` scores each
    window from C clips x K crops, averaged. Returns a :class:`TimelineRun`: iterate it, ``stop()``
    it, then take its ``result()``.
    """
    engine = make_engine(model, weights=weights, views=views, device=device, precision=precision, batch_size=batch_size)
    return TimelineRun(
        video,
        engine=engine,
        window=window,
        stride=stride,
        top_k=top_k,
        max_latency=max_latency,
        threads=threads,
        format=format,
    )


def timeline(
    video: str | os.PathLike,
    *,
    model: Any = "slow_r50",
    weights: str | os.PathLike | None = "kinetics400",
    views: Any = "1x1",
    window: float | None = None,
    stride: float | None = None,
    top_k: int = 5,
    smooth: int = 3,
    min_segment: float | None = None,
    out: str | os.PathLike | None = None,
    overlay: bool = False,
    device: str = "cpu",
    precision: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    format: str | None = None,
) -> TimelineResult:
    """The whole timeline of ``video``; with ``out`` also its files (and ``overlay.mp4``).

    ``smooth``: windows in the centred moving average; ``min_segment``: seconds under which a run
    of one label is absorbed by its neighbours (default: two windows). A decoding failure part-way
    is kept in ``result.error`` with the windows computed before it.
    """
    if smooth < 1:
        raise ValueError(f"--smooth must be at least 1, got {smooth!r}")
    if min_segment is not None and not min_segment >= 0:
        raise ValueError(f"--min-segment must be zero or more seconds, got {min_segment!r}")
    if overlay and out is None:
        raise ValueError("overlay=True writes overlay.mp4 into out: give out")
    with timeline_stream(
        video,
        model=model,
        weights=weights,
        views=views,
        window=window,
        stride=stride,
        top_k=top_k,
        device=device,
        precision=precision,
        batch_size=batch_size,
        threads=threads,
        format=format,
    ) as run:
        if overlay and run.live:
            raise ValueError(f"{run.path}: overlay needs a file (a stream cannot be read a second time)")
        for _ in run:
            pass
        result = run.result(smooth=smooth, min_segment=min_segment)
    if out is not None:
        result.save(out)
        if overlay and result.windows:
            from videozoo.jobs.timeline.overlay import write_overlay

            write_overlay(result, video, Path(out) / "overlay.mp4", threads=threads)
    return result
