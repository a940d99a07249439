"""Action timeline of a long video or a live stream: windows scored over time, smoothed into segments.

    result = videozoo.timeline("match.mp4", model="x3d_xs", out="timeline-output")
    for s in result.segments:
        print(f"{s.start:7.2f} {s.end:7.2f}  {s.label}")

    # Zero-shot: labels written at run time, "none" where none of them is likely enough.
    result = videozoo.timeline("yard.mp4", model="xclip_b16_zero_shot", labels="forklift reverses,person falls",
                               none_threshold=0.6)

    run = videozoo.timeline_stream("-", model="x3d_xs")      # windows as they are computed
    for w in run:
        print(w.start, w.top_k[0].label)                     # react live; run.stop() to end
    result = run.result()

Files: ``timeline.json``, ``timeline.csv``, ``timeline.png`` and, for files, ``overlay.mp4``
(see docs/timeline.md for their format, the smoothing and the window placement).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videozoo.engine import Engine
from videozoo.jobs.timeline.result import LabelScore, Segment, TimelineResult, TimelineWindow
from videozoo.jobs.timeline.run import NONE_LABEL, TimelineRun, check_none_threshold, window_plan
from videozoo.jobs.timeline.segments import find_segments, smooth_scores
from videozoo.jobs.timeline.windows import WindowFiller, WindowPlan

__all__ = [
    "NONE_LABEL",
    "LabelScore",
    "Segment",
    "TimelineResult",
    "TimelineRun",
    "TimelineWindow",
    "WindowFiller",
    "check_none_threshold",
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
    labels: str | Sequence[str] | None = None,
    template: str | None = None,
) -> Engine:
    """An :class:`Engine` from a registry name or a model (an engine is returned as it is).

    ``labels`` ("a,b,c" or a list), each put into ``template``: the classes of a video-text model
    (zero-shot), embedded once here; a video-text model needs them, a classifier refuses them.
    """
    if isinstance(model, Engine):
        if labels is not None:
            raise ValueError("labels are set when the engine is made: give a model or a registry name with them")
        return model
    from videozoo.jobs.classify import DEFAULT_TEMPLATE, check_labels_for, zero_shot_engine

    if check_labels_for(model, labels):
        return zero_shot_engine(
            model,
            labels or (),
            template=DEFAULT_TEMPLATE if template is None else template,
            weights=weights,
            views=views,
            device=device,
            precision=precision,
            batch_size=batch_size,
        )
    if template is not None:
        raise ValueError("--template is the prompt of zero-shot labels: give it with --labels or --labels-file")
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
    labels: str | Sequence[str] | None = None,
    template: str | None = None,
    none_threshold: float | None = None,
) -> TimelineRun:
    """Windows of ``video`` (a file, ``"-"`` for standard input, a URL or a camera) as they are scored.

    ``model`` is a registry name, a model or an :class:`Engine`. ``window`` and ``stride`` are in
    seconds (default: the model's clip duration and half of it). ``views`` ``"CxK"`` scores each
    window from C clips x K crops, averaged. Returns a :class:`TimelineRun`: iterate it, ``stop()``
    it, then take its ``result()``.

    ``labels`` (with a video-text model such as ``xclip_b16_zero_shot``): the classes, written at run
    time, each put into ``template`` (default ``"a video of {}."``). ``none_threshold``: a window whose
    best probability is under it is marked ``none``, and segments where no label's smoothed
    probability reaches it are labelled ``"none"`` instead of the closest label.
    """
    engine = make_engine(
        model,
        weights=weights,
        views=views,
        device=device,
        precision=precision,
        batch_size=batch_size,
        labels=labels,
        template=template,
    )
    return TimelineRun(
        video,
        engine=engine,
        window=window,
        stride=stride,
        top_k=top_k,
        max_latency=max_latency,
        threads=threads,
        format=format,
        none_threshold=none_threshold,
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
    labels: str | Sequence[str] | None = None,
    template: str | None = None,
    none_threshold: float | None = None,
) -> TimelineResult:
    """The whole timeline of ``video``; with ``out`` also its files (and ``overlay.mp4``).

    ``smooth``: windows in the centred moving average; ``min_segment``: seconds under which a run
    of one label is absorbed by its neighbours (default: two windows). A decoding failure part-way
    is kept in ``result.error`` with the windows computed before it. ``labels``, ``template``,
    ``none_threshold``: zero-shot classes and "none of these", as :func:`timeline_stream`.
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
        labels=labels,
        template=template,
        none_threshold=none_threshold,
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
