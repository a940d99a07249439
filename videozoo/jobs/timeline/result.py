"""What a timeline is made of: scored windows, segments, and the whole result with its files.

Seconds are the decoded stream's presentation times; frame ranges are half-open
(``start_frame`` is the first decoded frame in the span, ``end_frame`` one past the last), in the
decoding order of the stream (the order of :meth:`videozoo.io.Video.frames`).
"""

from __future__ import annotations

import bisect
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LabelScore:
    label: str
    index: int
    probability: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "probability": round(self.probability, 6)}


@dataclass(frozen=True)
class TimelineWindow:
    """One scored window: its span, its top-k classes and every class's probability."""

    index: int  # position on the timeline, 0, 1, ...
    start: float
    end: float
    start_frame: int
    end_frame: int
    top_k: tuple[LabelScore, ...]
    scores: np.ndarray = field(repr=False, compare=False)  # (K,) float32, mean over the window's views
    short: bool = False  # the video is shorter than the window: frames repeat to fill the clip
    none: bool | None = None  # with a none threshold: no label's probability reaches it (else None)

    @property
    def center(self) -> float:
        """Where the window's score is placed in time."""
        return (self.start + self.end) / 2

    def to_json(self) -> dict[str, Any]:
        out = {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "top_k": [s.to_json() for s in self.top_k],
        }
        if self.none is not None:
            out["none"] = self.none
        return out


@dataclass(frozen=True)
class Segment:
    """A run of one label over the smoothed windows; ``score`` is its mean smoothed probability."""

    label: str
    index: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    score: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "score": round(self.score, 6),
        }


@dataclass
class TimelineResult:
    """A whole timeline. ``error`` says why a run ended early (what was computed is kept);
    ``stopped`` names the signal (or ``"stop()"``) that ended a run before the end of its input."""

    video: str
    model: str
    fps: float
    duration: float
    window: float
    stride: float
    precision: str
    views: str
    windows: list[TimelineWindow]
    segments: list[Segment]
    class_names: list[str]
    smooth: int = 1
    min_segment: float = 0.0
    smoothed: np.ndarray | None = field(default=None, repr=False)  # (N, K) the smoothed probabilities
    frames: int = 0  # frames decoded
    lost_frames: int = 0
    error: str | None = None
    stopped: str | None = None
    seconds: float = 0.0  # wall time of the run
    none_threshold: float | None = None  # windows and segments below it are labelled "none"

    @property
    def short(self) -> bool:
        return any(w.short for w in self.windows)

    def to_json(self) -> dict[str, Any]:
        """The object of ``timeline.json``."""
        return {
            "video": self.video,
            "model": self.model,
            "fps": round(float(self.fps), 6),
            "duration": round(self.duration, 3),
            "window": round(self.window, 6),
            "stride": round(self.stride, 6),
            "precision": self.precision,
            **({} if self.none_threshold is None else {"none_threshold": self.none_threshold}),
            "windows": [w.to_json() for w in self.windows],
            "segments": [s.to_json() for s in self.segments],
        }

    def label_at(self, t: float) -> Segment | None:
        """The segment that holds time ``t`` (None outside them)."""
        return segment_at(self.segments, [s.start for s in self.segments], t)

    def save(self, out: str | os.PathLike, *, plot: bool = True) -> dict[str, Path]:
        """Write ``timeline.json``, ``timeline.csv`` and (with ``plot``) ``timeline.png`` to ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "timeline.json", "csv": out / "timeline.csv"}
        _write_atomic(paths["json"], json.dumps(self.to_json(), indent=1) + "\n")
        _write_csv(paths["csv"], self)
        if plot:
            from videozoo.jobs.timeline.plot import plot_timeline

            paths["png"] = plot_timeline(self, out / "timeline.png")
        return paths


def segment_at(segments: list[Segment], starts: list[float], t: float) -> Segment | None:
    """The segment holding time ``t``; ``starts`` are the segments' starts (ascending)."""
    if not segments or t < starts[0]:
        return None
    i = bisect.bisect_right(starts, t) - 1
    seg = segments[i]
    return seg if t < seg.end or (i == len(segments) - 1 and t <= seg.end) else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_csv(path: Path, result: TimelineResult) -> None:
    k = max((len(w.top_k) for w in result.windows), default=0)
    header = ["start", "end", "start_frame", "end_frame", "segment"]
    for i in range(1, k + 1):
        header += [f"label_{i}", f"probability_{i}"]
    starts = [s.start for s in result.segments]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for w in result.windows:
            seg = segment_at(result.segments, starts, w.center)
            row: list[Any] = [f"{w.start:.3f}", f"{w.end:.3f}", w.start_frame, w.end_frame, seg.label if seg else ""]
            for s in w.top_k:
                row += [s.label, f"{s.probability:.6f}"]
            writer.writerow(row)
    os.replace(tmp, path)
