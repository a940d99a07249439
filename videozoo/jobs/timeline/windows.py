"""Where the timeline's windows lie, and which decoded frames each one takes, in one sequential pass.

Windows start at the first frame's time ``t0`` and every ``stride`` seconds after it; window ``k``
covers ``[t0 + k * stride, t0 + k * stride + window)``. With ``clips`` > 1 (the views' CLIPS) each
window is scored from ``clips`` clips of the same length whose centres are spread evenly over the
``stride`` around the window's centre (the stretch of time the window stands for on the timeline).

:class:`WindowFiller` is fed the frames of :meth:`videozoo.io.Video.frames` in order and hands out
each window once a frame at or past its end has arrived (or the stream has ended). It holds a
frame only while a window that is not complete yet may contain it, plus the last ``window +
stride`` seconds (for the window moved back to end at the end of the stream), so what it holds is
bounded by the window length and never grows with the video. Frames stay in the decoder's format
until a window keeps them (:meth:`videozoo.io.Frame.rgb` converts once and caches).

At the end of the stream: windows that end within it are kept; the others are dropped, and if the
last kept window leaves more than half a frame of the end uncovered, one more window is placed to
end at the end of the stream. A stream shorter than one window gives one window over all of it
(``short``); the model's frame selection repeats frames to fill the clip, as the engine does for
a short video.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from videozoo.io import Frame

# Timestamps and window bounds are sums of floats: a frame within a microsecond of a bound counts
# as on it (frame 72 at 72 / 30 s starts the window at 0.8 + 1.6 s, it does not end the one before).
EPS = 1e-6


@dataclass(frozen=True)
class WindowPlan:
    """Window length and stride in seconds; ``clips`` clips per window, each ``clip_span`` long."""

    window: float
    stride: float
    clips: int = 1
    clip_span: float | None = None  # seconds of frames one clip takes (default: the window)

    def __post_init__(self) -> None:
        for name in ("window", "stride"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"--{name} must be a positive number of seconds, got {value!r}")
        if self.clips < 1:
            raise ValueError(f"each window needs at least one clip, got {self.clips}")
        if self.clip_span is not None and not self.clip_span > 0:
            raise ValueError(f"clip span must be positive, got {self.clip_span!r}")

    @property
    def span(self) -> float:
        return min(self.clip_span, self.window) if self.clip_span is not None else self.window

    def clip_offsets(self) -> list[float]:
        """Offsets of the clip centres from the window's centre (seconds, ascending)."""
        c = self.clips
        return [(j - (c - 1) / 2) * self.stride / c for j in range(c)]


@dataclass
class FilledWindow:
    """One window with the frames of each of its clips (ascending time), ready to be scored."""

    index: int
    start: float
    end: float  # the window's end, or the end of the stream where that comes first
    start_frame: int  # index of the first decoded frame in [start, end)
    end_frame: int  # one past the last (a half-open range, like the seconds)
    short: bool  # the stream is shorter than one window: frames repeat to fill the clip
    clips: list[list[Frame]] = field(repr=False)
    start_pts: float = 0.0  # time of frame start_frame

    @property
    def center(self) -> float:
        return (self.start + self.end) / 2


@dataclass
class _Open:
    index: int
    start: float
    end: float
    clips: list[tuple[float, float]]  # [start, end) of each clip

    @property
    def first(self) -> float:
        return min(a for a, _ in self.clips)

    @property
    def last(self) -> float:
        return max(b for _, b in self.clips)


class WindowFiller:
    """Sequential window assembly over a stream of frames (see the module docstring).

    ``push(frame)`` returns the windows that frame completed; ``finish()`` the rest, once the
    stream has ended. ``fps`` is the stream's nominal rate (the length of the last frame); without
    one, the smallest gap between timestamps is used.
    """

    def __init__(self, plan: WindowPlan, *, fps: float | None = None):
        self.plan = plan
        self._fps = fps if fps and fps > 0 else None
        self._held: deque[Frame] = deque()
        self._open: deque[_Open] = deque()
        self._next = 0
        self.t0: float | None = None
        self.last_t = -math.inf
        self.frames_seen = 0
        self.emitted = 0
        self.peak_held = 0
        self._min_gap = math.inf
        self._last_end = -math.inf  # nominal end of the last window handed out
        self._finished = False

    # -- the stream -------------------------------------------------------------------------
    def push(self, frame: Frame) -> list[FilledWindow]:
        if self._finished:
            raise RuntimeError("the stream has already been finished")
        t = float(frame.pts_sec)
        if self.t0 is None:
            self.t0 = t
        if t > self.last_t:
            if math.isfinite(self.last_t):
                self._min_gap = min(self._min_gap, t - self.last_t)
            self.last_t = t
        self.frames_seen += 1
        self._held.append(frame)
        while self._position(self._next).first <= t + EPS:
            self._open.append(self._position(self._next))
            self._next += 1
        done = []
        # Windows complete in order: their clip ends grow with their index.
        while self._open and self._open[0].last <= t + EPS:
            done.append(self._fill(self._open.popleft(), short=False))
        self._prune()
        self.peak_held = max(self.peak_held, len(self._held))
        return [w for w in done if w is not None]

    def finish(self) -> list[FilledWindow]:
        """The windows left once the stream has ended (see the module docstring)."""
        self._finished = True
        if self.t0 is None:
            return []
        end = self.end
        tol = self.frame_interval / 2
        out: list[_Open] = []
        for w in self._open:
            if w.end <= end + tol:
                out.append(self._clamped(w, end))
        self._open.clear()
        last_end = max([self._last_end, *(w.end for w in out)])
        if self.emitted == 0 and not out:
            span = (self.t0, end)
            out.append(_Open(0, self.t0, end, [span]))
            filled = [self._fill(out[0], short=True)]
            return [w for w in filled if w is not None]
        if last_end < end - tol:
            start = max(self.t0, end - self.plan.window)
            index = (out[-1].index if out else self._next - 1) + 1
            centre = start + self.plan.window / 2
            out.append(self._clamped(_Open(index, start, end, self._clips(centre)), end))
        return [w for w in (self._fill(x, short=False) for x in out) if w is not None]

    @property
    def frame_interval(self) -> float:
        if self._fps:
            return 1.0 / self._fps
        return self._min_gap if math.isfinite(self._min_gap) else 0.04

    @property
    def end(self) -> float:
        """Where the stream seen so far ends: the last frame's time plus one frame."""
        return self.last_t + self.frame_interval if self.t0 is not None else 0.0

    # -- internals --------------------------------------------------------------------------
    def _clips(self, centre: float) -> list[tuple[float, float]]:
        half = self.plan.span / 2
        return [(centre + o - half, centre + o + half) for o in self.plan.clip_offsets()]

    def _position(self, k: int) -> _Open:
        start = (self.t0 or 0.0) + k * self.plan.stride
        clips = [
            (max(a, self.t0 or 0.0), max(b, (self.t0 or 0.0) + self.plan.span))
            for a, b in self._clips(start + self.plan.window / 2)
        ]
        return _Open(k, start, start + self.plan.window, clips)

    def _clamped(self, w: _Open, end: float) -> _Open:
        # A clip reaching past the end of the stream moves back to end there.
        t0 = self.t0 or 0.0
        clips = [(a, b) if b <= end else (max(t0, end - (b - a)), end) for a, b in w.clips]
        return _Open(w.index, w.start, min(w.end, end), clips)

    def _prune(self) -> None:
        low = self.last_t - (self.plan.window + self.plan.stride + self.plan.span)
        if self._open:
            low = min(low, min(w.first for w in self._open))
        low = min(low, self._position(self._next).first)
        while self._held and self._held[0].pts_sec < low - EPS:
            self._held.popleft()

    def _fill(self, w: _Open, *, short: bool) -> FilledWindow | None:
        clips = []
        for a, b in w.clips:
            frames = sorted((f for f in self._held if a - EPS <= f.pts_sec < b - EPS), key=lambda f: f.pts_sec)
            if frames:
                clips.append(frames)
        inside = [f for f in self._held if w.start - EPS <= f.pts_sec < w.end - EPS]
        self._last_end = max(self._last_end, w.end)
        if not clips or not inside:
            return None  # nothing was decoded in the window (a gap in the stream)
        self.emitted += 1
        first = min(inside, key=lambda f: f.index)
        last = max(f.index for f in inside)
        return FilledWindow(w.index, w.start, w.end, first.index, last + 1, short, clips, float(first.pts_sec))
