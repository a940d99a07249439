"""What decoding hands out: clips of windows, single frames, damage reports, counters."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class LostFrame:
    """A frame (or run of frames) that was damaged or could not be decoded.

    pts_sec: presentation time of the (first) affected frame, relative to
        the stream start; ``None`` when unknown.
    count: number of frames this entry stands for (estimated for gaps).
    reason: what happened.
    kept: True when the decoder still produced the frame (error-concealed
        picture) and it is included in the clip; False when it is absent.
    ended: True for the entry that reports a stream ending before its
        declared duration (a cut file): nothing decodes after ``span[0]``.
    gap: True for a jump in otherwise clean timestamps (frames dropped, or a
        recording paused), as opposed to frames that failed to decode.
    """

    pts_sec: float | None
    count: int
    reason: str
    kept: bool = False
    ended: bool = False
    gap: bool = False
    # Span [start, end) of stream time the entry covers, for matching it to
    # windows; for unknown positions it covers everything after the last
    # good frame.
    span: tuple[float, float] = field(default=(0.0, math.inf), repr=False, compare=False)


@dataclass
class Clip:
    """Frames of one window.

    frames: uint8 RGB tensor ``(C=3, T, H, W)``, rotation already applied.
    pts_sec: float64 tensor ``(T,)`` with each frame's presentation time in
        seconds from the stream start.
    lost: damaged or missing frames inside the window; empty normally.
    window_pts_sec: float64 tensor ``(N,)``, the timestamps of every frame
        decoded in the window, ascending. It equals ``pts_sec`` unless the
        clip was taken with a ``select`` function, which keeps ``T`` of the
        ``N`` frames.
    """

    frames: torch.Tensor
    pts_sec: torch.Tensor
    start_sec: float
    end_sec: float
    lost: list[LostFrame] = field(default_factory=list)
    window_pts_sec: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.window_pts_sec is None:
            self.window_pts_sec = self.pts_sec

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])


class Frame:
    """One frame from :meth:`Video.frames`, converted to RGB only on demand.

    index: position among the frames decoded by this iteration (0, 1, ...),
        counting the frames ``select`` skipped.
    pts_sec: presentation time in seconds from the stream start.
    lost: damage reported since the previous decoded frame (missing frames
        before this one, or this frame decoded with errors: ``kept=True``).

    Until :meth:`rgb` is called the frame holds the decoder's picture (YUV
    for PyAV), about half the memory of RGB; afterwards only the RGB copy.
    """

    __slots__ = ("index", "pts_sec", "lost", "_payload", "_rgb", "_convert")

    def __init__(
        self, index: int, pts_sec: float, lost: list[LostFrame], payload: Any, convert: Callable[[Any], torch.Tensor]
    ) -> None:
        self.index = index
        self.pts_sec = pts_sec
        self.lost = lost
        self._payload = payload
        self._rgb: torch.Tensor | None = None
        self._convert = convert

    def rgb(self) -> torch.Tensor:
        """uint8 ``(3, H, W)`` RGB, rotation applied; converted once, then cached."""
        if self._rgb is None:
            self._rgb = self._convert(self._payload)
            self._payload = None
        return self._rgb

    def __repr__(self) -> str:
        state = "rgb" if self._rgb is not None else "not converted"
        return f"Frame(index={self.index}, pts_sec={self.pts_sec:.6f}, {state}, lost={len(self.lost)})"


@dataclass
class DecodeStats:
    """Counters accumulated over the life of a :class:`Video`."""

    frames_decoded: int = 0  # frames produced by the decoder (kept or not)
    frames_converted: int = 0  # frames converted to RGB
    packets: int = 0  # compressed packets read
    seeks: int = 0  # container seeks, retries included
    seek_retries: int = 0  # seeks repeated because the first one landed late
    passes: int = 0  # forward decoding passes
    peak_frames_held: int = 0  # most decoded frames buffered at once

    def reset(self) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)
