"""Scoring a video's windows as they are decoded: one sequential pass, windows batched per forward.

The video is read once, in order, with :meth:`videozoo.io.Video.frames` (no seeking, so standard
input, URLs and cameras work as files do). :class:`~videozoo.jobs.timeline.windows.WindowFiller`
hands out each window with its frames once complete; of each clip only the frames the model keeps
(the engine transform's ``select_frames``) are converted to RGB, and the engine's transform turns
them into views. Completed windows wait until their views fill one of the engine's batches (or,
for live input, until the oldest has waited ``max_latency`` seconds), then go through
``engine.forward`` together; a window's score is the mean of its views' scores.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from videozoo.engine import Engine
from videozoo.engine.views import Views, count_views, stack_views
from videozoo.io import VideoDecodeError, open_video
from videozoo.jobs.timeline.result import LabelScore, Segment, TimelineResult, TimelineWindow
from videozoo.jobs.timeline.segments import find_segments, smooth_scores
from videozoo.jobs.timeline.windows import FilledWindow, WindowFiller, WindowPlan

# Live input: a window waits at most this long (wall clock) for others to share its forward pass.
LIVE_MAX_LATENCY_SEC = 1.0

#: The label of the segments (and windows) where no class reaches ``none_threshold``.
NONE_LABEL = "none"


def check_none_threshold(threshold: float | None, classes: int) -> float | None:
    """A probability above 1/K (K classes: the best of K probabilities is never below 1/K) and under 1."""
    if threshold is None:
        return None
    low = 1.0 / classes if classes else 0.0
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and low < threshold < 1):
        raise ValueError(
            f"--none-threshold must be a probability above 1/{classes} = {low:.3f} (with {classes} labels the best "
            f"probability is never below that) and under 1, got {threshold!r}"
        )
    return float(threshold)


def window_plan(engine: Engine, window: float | None = None, stride: float | None = None) -> WindowPlan:
    """The model's clip duration as the window and half of it as the stride, unless given."""
    clip = engine.input.clip_seconds
    window = clip if window is None else window
    if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise ValueError(f"--window must be a positive number of seconds, got {window!r}")
    stride = window / 2 if stride is None else stride
    # Recipes that step through frames at a fixed interval sample one clip's length: they take it
    # from the middle of a longer window.
    span = clip if engine.transform.temporal.mode == "stride" else None
    return WindowPlan(float(window), float(stride), clips=engine.plan.clips, clip_span=span)


class TimelineRun:
    """An iterator of :class:`TimelineWindow` over one video, as they are computed.

    ``stop()`` (from a signal handler, a callback or another thread) ends the run after the
    windows already complete are scored; ``result()`` builds the :class:`TimelineResult` of what was
    computed. Open failures raise :class:`videozoo.io.VideoDecodeError` at once; a decoding failure
    part-way ends the iteration and is kept in ``error``.
    """

    def __init__(
        self,
        video: str | os.PathLike,
        *,
        engine: Engine,
        window: float | None = None,
        stride: float | None = None,
        top_k: int = 5,
        max_latency: float | None = None,
        threads: int | None = None,
        format: str | None = None,
        none_threshold: float | None = None,
        output: str = "scores",
    ):
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"--top-k must be at least 1, got {top_k!r}")
        self.engine = engine
        self.plan = window_plan(engine, window, stride)
        self.top_k = top_k
        self.path = os.fspath(video)
        if output not in ("scores", "features"):
            raise ValueError(f"output must be scores or features, got {output!r}")
        if output == "features" and none_threshold is not None:
            raise ValueError("--none-threshold applies to scores, not to features")
        # "features": each window holds the mean of its views' features (embed), not class scores.
        self.output = output
        self.class_names = list(engine.class_names or []) if output == "scores" else []
        self.none_threshold = check_none_threshold(none_threshold, len(self.class_names))
        if self.none_threshold is not None and NONE_LABEL in self.class_names:
            raise ValueError(
                f"a label is called {NONE_LABEL!r}, the name --none-threshold gives to windows and segments "
                "where no label reaches it: rename that label"
            )
        self._video = open_video(video, threads=threads, fps=engine.input.fps, format=format)
        self.live = not self._video.seekable
        self.fps = float(self._video.fps or 0.0)
        self.declared_duration = self._video.duration
        self.max_latency = (LIVE_MAX_LATENCY_SEC if self.live else None) if max_latency is None else max_latency
        self.windows: list[TimelineWindow] = []
        self.error: str | None = None
        self.stopped: str | None = None
        self.lost_frames = 0
        self.seconds = 0.0
        self._anchors: list[tuple[float, int]] = []
        self._filler = WindowFiller(self.plan, fps=self.fps)
        self._stop: str | None = None
        self._gen = self._run()

    # -- iteration --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[TimelineWindow]:
        return self

    def __next__(self) -> TimelineWindow:
        return next(self._gen)

    def stop(self, reason: str = "stop()") -> None:
        """End the run at the next frame; the windows complete by then are still scored."""
        self._stop = reason

    def close(self) -> None:
        self._gen.close()
        self._video.close()

    def __enter__(self) -> TimelineRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def end(self) -> float:
        """Where the decoded stream ends so far (seconds)."""
        return self._filler.end

    @property
    def frames(self) -> int:
        return self._filler.frames_seen

    @property
    def peak_frames_held(self) -> int:
        return self._filler.peak_held

    def _run(self) -> Iterator[TimelineWindow]:
        t_start = time.perf_counter()
        pending: list[tuple[FilledWindow, Views]] = []
        waiting = 0  # views in pending
        since = 0.0
        try:
            for frame in self._video.frames():
                self.lost_frames += sum(x.count for x in frame.lost if not x.kept)
                for fw in self._filler.push(frame):
                    v = self._views(fw)
                    if not pending:
                        since = time.perf_counter()
                    pending.append((fw, v))
                    waiting += count_views(v)
                late = self.max_latency is not None and pending and time.perf_counter() - since >= self.max_latency
                if waiting >= self.engine.batch_size or late:
                    yield from self._flush(pending)
                    waiting = 0
                if self._stop is not None:
                    self.stopped = self._stop
                    break
            else:
                self._check_complete()
        except VideoDecodeError as e:
            self.error = str(e)
        finally:
            self.seconds = time.perf_counter() - t_start
        # Everything decoded so far is scored, whatever ended the run.
        for fw in self._filler.finish():
            pending.append((fw, self._views(fw)))
        yield from self._flush(pending)
        self._video.close()
        self.seconds = time.perf_counter() - t_start

    def _check_complete(self) -> None:
        d = self.declared_duration
        if d is not None and self.frames and self.end + 1.5 * self._filler.frame_interval < d:
            self.error = (
                f"{self.path}: the video ends at {self.end:.3f} s, before its declared duration "
                f"{d:.3f} s (truncated?); the timeline covers what was decoded"
            )

    def _views(self, fw: FilledWindow) -> Views:
        """The window's views: per clip, the frames the model keeps, through the engine's transform."""
        transform = self.engine.transform
        fps = self.fps or None
        per_clip = []
        for frames in fw.clips:
            pts = torch.tensor([f.pts_sec for f in frames], dtype=torch.float64)
            keep = transform.select_frames(len(frames), pts, fps).tolist()
            first = frames[keep[0]].rgb().numpy()
            x = np.empty((3, len(keep), *first.shape[1:]), dtype=np.uint8)  # (C, T, H, W)
            for j, p in enumerate(keep):
                x[:, j] = frames[p].rgb().numpy()
            per_clip.append(transform(torch.from_numpy(x), video_fps=fps, presampled=True))
        return stack_views(per_clip)

    def _flush(self, pending: list[tuple[FilledWindow, Views]]) -> Iterator[TimelineWindow]:
        if not pending:
            return
        scores = self.engine.forward(stack_views([v for _, v in pending]), self.output)  # (sum of views, K or D)
        batch = list(pending)
        pending.clear()
        i = 0
        for fw, v in batch:
            n = count_views(v)
            window = self._window(fw, scores[i : i + n].mean(0))
            i += n
            self.windows.append(window)
            self._anchors.append((fw.start_pts, fw.start_frame))
            yield window

    def _window(self, fw: FilledWindow, scores: torch.Tensor) -> TimelineWindow:
        k = min(self.top_k, scores.numel()) if self.output == "scores" else 0
        probs, idx = scores.topk(k)
        top = tuple(
            LabelScore(self._label(i), int(i), float(p)) for p, i in zip(probs.tolist(), idx.tolist(), strict=True)
        )
        return TimelineWindow(
            index=len(self.windows),
            start=fw.start,
            end=fw.end,
            start_frame=fw.start_frame,
            end_frame=fw.end_frame,
            top_k=top,
            scores=scores.numpy().astype(np.float32),
            short=fw.short,
            none=None if self.none_threshold is None else bool(probs[0] < self.none_threshold),
        )

    def _label(self, i: int) -> str:
        return self.class_names[i] if i < len(self.class_names) else str(i)

    # -- the result -------------------------------------------------------------------------
    def frame_at(self, t: float) -> int:
        """Index of the first decoded frame at or after time ``t`` (from the windows' first frames)."""
        total = self.frames
        rate = 1.0 / self._filler.frame_interval
        base_t, base_f = (self._filler.t0 or 0.0), 0
        nxt = total
        for at, f in self._anchors:
            if at <= t + 1e-9:
                if at >= base_t:
                    base_t, base_f = at, f
            else:
                nxt = min(nxt, f)
        n = base_f + max(0, math.ceil((t - base_t) * rate - 1e-6))
        return int(min(n, nxt, total))

    def result(self, *, smooth: int = 3, min_segment: float | None = None) -> TimelineResult:
        """The timeline of the windows computed so far, smoothed and cut into segments."""
        if not isinstance(smooth, int) or smooth < 1:
            raise ValueError(f"--smooth must be at least 1, got {smooth!r}")
        # A window straddling a hard cut between scenes can score a third class: runs under two
        # windows are not taken as actions of their own by default.
        min_segment = 2 * self.plan.window if min_segment is None else float(min_segment)
        if not min_segment >= 0:
            raise ValueError(f"--min-segment must be zero or more seconds, got {min_segment!r}")
        k = len(self.class_names) or (self.windows[0].scores.size if self.windows else 0)
        names = self.class_names or [str(i) for i in range(k)]
        scores = np.stack([w.scores for w in self.windows]) if self.windows else np.zeros((0, k), np.float32)
        smoothed = smooth_scores(scores, smooth)
        threshold = self.none_threshold
        if threshold is not None:
            # "None of these" joins as one more class whose score is the threshold at every window:
            # a window goes to it where no smoothed probability reaches the threshold, and a boundary
            # with a label is where that label's smoothed probability crosses the threshold.
            smoothed = np.concatenate([smoothed, np.full((len(smoothed), 1), threshold)], axis=1)
            names = [*names, NONE_LABEL]
        start = self._filler.t0 or 0.0
        segments = find_segments(
            [w.center for w in self.windows],
            smoothed,
            start=start,
            end=self.end,
            min_segment=min_segment,
            class_names=names,
            frame_at=self.frame_at,
        )
        if threshold is not None:
            segments = [_none_score(s, self.windows, smoothed) if s.index == k else s for s in segments]
        return TimelineResult(
            video=self.path,
            model=self.engine.model_name,
            fps=self.fps or 1.0 / self._filler.frame_interval,
            duration=self.end,
            window=self.plan.window,
            stride=self.plan.stride,
            precision=self.engine.precision.name,
            views=str(self.engine.plan),
            windows=list(self.windows),
            segments=segments,
            class_names=names,
            smooth=smooth,
            min_segment=min_segment,
            smoothed=smoothed.astype(np.float32),
            frames=self.frames,
            lost_frames=self.lost_frames,
            error=self.error,
            stopped=self.stopped,
            seconds=self.seconds,
            none_threshold=threshold,
        )


def _none_score(segment: Segment, windows: list[TimelineWindow], smoothed: np.ndarray) -> Segment:
    """A "none" segment scores the mean smoothed probability of the best label over its windows."""
    inside = [i for i, w in enumerate(windows) if segment.start <= w.center < segment.end]
    best = smoothed[inside, :-1].max(1).mean() if inside else 0.0
    return dataclasses.replace(segment, score=float(best))
