"""Clip decoding from video files and frame folders.

A :class:`Video` hands out :class:`Clip` objects for time windows. All
backends share the window logic in :class:`Video`: windows are validated,
sorted, grouped into runs that are decoded in one forward pass each, and
every decoded frame is kept only while some window still needs it.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import DamagedVideoWarning, VideoDecodeError, describe

PathLike = Union[str, os.PathLike]

# Formats FFmpeg "reads" that are not videos: tty renders any text file.
_NOT_VIDEO_FORMATS = {"tty"}
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# A jump between frames longer than this many typical intervals is reported
# as missing frames. Large enough that ordinary variable frame rate (e.g.
# 30 -> 10 fps stretches) is not mistaken for damage.
_GAP_FACTOR = 4.0
# Windows whose starts are further than this past the end of the previous
# window are decoded after a fresh seek instead of decoding the gap.
DEFAULT_SEEK_GAP_SEC = 8.0
_MAX_SEEK_RETRIES = 12
# After a seek, at most this many non-key pictures are discarded while
# waiting for a keyframe (streams without keyframe flags still decode).
_MAX_LEADING_SKIP = 64


@dataclass
class LostFrame:
    """A frame (or run of frames) that was damaged or could not be decoded.

    pts_sec: presentation time of the (first) affected frame, relative to
        the stream start; ``None`` when unknown.
    count: number of frames this entry stands for (estimated for gaps).
    reason: what happened.
    kept: True when the decoder still produced the frame (error-concealed
        picture) and it is included in the clip; False when it is absent.
    """

    pts_sec: Optional[float]
    count: int
    reason: str
    kept: bool = False
    # Span [start, end) of stream time the entry covers, for matching it to
    # windows; for unknown positions it covers everything after the last
    # good frame.
    span: Tuple[float, float] = field(default=(0.0, math.inf), repr=False, compare=False)


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
    lost: List[LostFrame] = field(default_factory=list)
    window_pts_sec: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.window_pts_sec is None:
            self.window_pts_sec = self.pts_sec

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])


@dataclass
class DecodeStats:
    """Counters accumulated over the life of a :class:`Video`."""

    frames_decoded: int = 0  # frames produced by the decoder (kept or not)
    frames_converted: int = 0  # frames converted to RGB and kept
    packets: int = 0  # compressed packets read
    seeks: int = 0  # container seeks, retries included
    seek_retries: int = 0  # seeks repeated because the first one landed late
    passes: int = 0  # forward decoding passes
    peak_frames_held: int = 0  # most decoded frames buffered at once

    def reset(self) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)


@dataclass
class _Window:
    index: int
    start: float
    end: float
    done: bool = False


# select(window_index, window_pts_sec (N,) float64) -> positions (K,) in 0..N-1
Select = Callable[[int, torch.Tensor], torch.Tensor]


class _Held:
    """A decoded frame kept for open windows: the backend's payload until
    some window selects it, then its planar RGB array (the payload is
    released, so a frame is never held twice)."""

    __slots__ = ("t", "payload", "rgb")

    def __init__(self, t: float, payload) -> None:
        self.t = t
        self.payload = payload
        self.rgb: Optional[np.ndarray] = None


class Video:
    """Base class: window bookkeeping shared by all backends.

    Subclasses provide metadata attributes and :meth:`_iter_frames`, a
    generator of ``(pts_sec, payload)`` for frames from a position at or
    before a requested time, interleaved with :class:`LostFrame` items.
    """

    path: str
    fps: float
    width: int  # after rotation
    height: int  # after rotation
    duration: float
    backend: str

    def __init__(self) -> None:
        self.stats = DecodeStats()
        self.seek_gap_sec = DEFAULT_SEEK_GAP_SEC
        self._closed = False

    # -- public API ---------------------------------------------------------

    def get_clip(self, start_sec: float, end_sec: float, *, select: Optional[Select] = None) -> Clip:
        """Frames whose timestamps fall in ``[start_sec, end_sec)``.

        ``select`` is as for :meth:`get_clips` (called with window index 0).
        """
        return self.get_clips([(start_sec, end_sec)], select=select)[0]

    def get_clips(self, windows: Sequence[Tuple[float, float]], *, select: Optional[Select] = None) -> List[Clip]:
        """One clip per ``(start_sec, end_sec)`` window, in the given order.

        Windows are decoded in forward passes: one seek to the keyframe
        before the earliest window, then decoding up to the last window's
        end. Only when the next window starts more than ``seek_gap_sec``
        after everything before it has ended is a new pass (seek) started.
        A frame needed by several windows is converted once; the returned
        clips are independent tensors.

        ``select(window_index, pts_sec)`` picks the frames a clip keeps:
        given the index of the window in ``windows`` and the ``(N,)``
        float64 timestamps of the frames decoded in it (ascending), it
        returns the positions ``(K,)`` (0..N-1, any order, repeats allowed)
        of the frames to keep, in the order the clip holds them. Only
        those frames are converted to RGB; the others stay in the decoder's
        format until the window is complete and are then dropped. The clip's
        ``window_pts_sec`` holds all ``N`` timestamps.
        """
        self._check_open()
        wins = [self._check_window(i, s, e) for i, (s, e) in enumerate(windows)]
        if not wins:
            return []
        if select is not None and not callable(select):
            raise TypeError(f"select must be a function (window_index, pts_sec) -> positions, got {select!r}")
        order = sorted(wins, key=lambda w: (w.start, w.end))
        runs: List[List[_Window]] = []
        for w in order:
            if runs and w.start - max(x.end for x in runs[-1]) <= self.seek_gap_sec:
                runs[-1].append(w)
            else:
                runs.append([w])
        clips: List[Optional[Clip]] = [None] * len(wins)
        lost_total: List[LostFrame] = []
        for run in runs:
            for w, clip in self._decode_run(run, select):
                clips[w.index] = clip
                lost_total.extend(x for x in clip.lost if x not in lost_total)
        if lost_total:
            n = sum(x.count for x in lost_total)
            warnings.warn(
                f"{self.path}: {n} frame(s) damaged or missing in the requested windows "
                f"({lost_total[0].reason}{', ...' if len(lost_total) > 1 else ''})",
                DamagedVideoWarning,
                stacklevel=2,
            )
        return clips  # type: ignore[return-value]

    def decode_all(self) -> Clip:
        """Every frame of the video from a plain sequential decode."""
        self._check_open()
        frames: List[np.ndarray] = []
        pts: List[float] = []
        lost: List[LostFrame] = []
        for item in self._iter_frames(None):
            if isinstance(item, LostFrame):
                lost.append(item)
                continue
            t, payload = item
            frames.append(self._to_planar(payload))
            self.stats.frames_converted += 1
            pts.append(t)
        if not frames:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        last_t = max(pts)
        if last_t + self._frame_interval() * 1.5 < self.duration - 1e-6:
            lost.append(self._ended_early(last_t, self.duration, last_t))
        order = sorted(range(len(pts)), key=pts.__getitem__)
        clip = Clip(
            self._stack([frames[i] for i in order]),
            torch.tensor([pts[i] for i in order], dtype=torch.float64),
            -math.inf, math.inf, lost,
        )
        if lost:
            warnings.warn(
                f"{self.path}: {sum(x.count for x in lost)} frame(s) damaged or missing ({lost[0].reason})",
                DamagedVideoWarning,
                stacklevel=2,
            )
        return clip

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, {self.width}x{self.height}, "
            f"fps={self.fps:.3f}, duration={self.duration:.3f}s)"
        )

    # -- backend hooks ------------------------------------------------------

    def _iter_frames(self, start_sec: Optional[float]) -> Iterator:
        """Yield ``(pts_sec, payload)`` / :class:`LostFrame` from a position
        whose first frame is at or before ``start_sec`` (or the stream start
        when ``start_sec`` is None or no such position exists)."""
        raise NotImplementedError

    def _to_planar(self, payload) -> np.ndarray:
        """``(3, H, W)`` uint8 RGB array, contiguous, not yet rotated."""
        raise NotImplementedError

    _rotation_k = 0  # counterclockwise quarter turns applied to every frame

    # -- shared machinery ---------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise VideoDecodeError(self.path, "video is closed")

    def _check_window(self, i: int, s: float, e: float) -> _Window:
        try:
            s, e = float(s), float(e)
        except (TypeError, ValueError):
            raise VideoDecodeError(self.path, f"window {i} ({s!r}, {e!r}) is not a pair of numbers") from None
        if math.isnan(s) or math.isnan(e) or s >= e:
            raise VideoDecodeError(self.path, f"window {i} [{s}, {e}) is empty (start must be < end)")
        if s >= self.duration:
            raise VideoDecodeError(
                self.path, f"window {i} [{s}, {e}) starts at or after the end of the video ({self.duration:.3f} s)"
            )
        if e <= 0:
            raise VideoDecodeError(self.path, f"window {i} [{s}, {e}) ends before the video starts")
        return _Window(i, s, e)

    def _decode_run(self, run: List[_Window], select: Optional[Select]) -> Iterator[Tuple[_Window, Clip]]:
        """Decode one forward pass covering ``run`` (sorted by start)."""
        self.stats.passes += 1
        first = run[0].start
        last_end = max(w.end for w in run)
        # Without a selection every frame of a window is kept, so it is
        # converted as it arrives; with one, conversion waits for the
        # window to complete and covers only the selected frames.
        eager = select is None
        # Decoded frames still needed by an unfinished window, in decoding order.
        held: List[_Held] = []
        lost: List[LostFrame] = []
        pending = list(run)
        last_t = -math.inf
        for item in self._iter_frames(first if first > 0 else None):
            if isinstance(item, LostFrame):
                lost.append(item)
                continue
            t, payload = item
            # Windows that end at or before this frame are complete.
            if t >= last_end:
                break
            last_t = max(last_t, t)
            still = []
            for w in pending:
                if t >= w.end:
                    yield w, self._window_clip(w, held, lost, select)
                else:
                    still.append(w)
            pending = still
            if any(w.start <= t < w.end for w in pending):
                entry = _Held(t, payload)
                if eager:
                    self._convert(entry)
                held.append(entry)
            # Frames before every remaining window's start are not needed.
            low = min((w.start for w in pending), default=math.inf)
            if held and held[0].t < low:
                held = [x for x in held if x.t >= low]
            self.stats.peak_frames_held = max(self.stats.peak_frames_held, len(held))
        else:
            # The stream ended before the last window's end.
            if pending and last_t + self._frame_interval() * 1.5 < min(last_end, self.duration) - 1e-6:
                lost.append(self._ended_early(max(last_t, first), min(last_end, self.duration), last_t))
        for w in pending:
            yield w, self._window_clip(w, held, lost, select)

    def _convert(self, entry: _Held) -> np.ndarray:
        if entry.rgb is None:
            entry.rgb = self._to_planar(entry.payload)
            entry.payload = None
            self.stats.frames_converted += 1
        return entry.rgb

    def _ended_early(self, since: float, until: float, last_t: float) -> LostFrame:
        return LostFrame(
            pts_sec=None,
            count=max(1, int(round((until - since) * self._nominal_fps()))),
            reason=f"stream ended at {max(last_t, 0.0):.3f} s before the declared duration "
            f"{self.duration:.3f} s (file truncated?)",
            span=(since, math.inf),
        )

    def _nominal_fps(self) -> float:
        return self.fps if self.fps and self.fps > 0 else 25.0

    def _frame_interval(self) -> float:
        return 1.0 / self.fps if self.fps and self.fps > 0 else 0.04

    def _window_clip(self, w: _Window, held: List[_Held], lost: List[LostFrame], select: Optional[Select]) -> Clip:
        # Stable sort: the window's frames by presentation time.
        sel = sorted((x for x in held if w.start <= x.t < w.end), key=lambda x: x.t)
        lost_here = [x for x in lost if x.span[0] < w.end and x.span[1] > w.start]
        if not sel:
            why = f"; {lost_here[0].reason}" if lost_here else ""
            raise VideoDecodeError(self.path, f"no frame decoded in window [{w.start}, {w.end}){why}")
        w.done = True
        window_pts = torch.tensor([x.t for x in sel], dtype=torch.float64)
        if select is None:
            positions = list(range(len(sel)))
        else:
            positions = self._positions(select, w, window_pts)
        frames = [self._convert(sel[p]) for p in positions]
        pts = torch.tensor([sel[p].t for p in positions], dtype=torch.float64)
        return Clip(
            self._stack(frames), pts, w.start, w.end, lost_here,
            window_pts_sec=window_pts if select is not None else pts,
        )

    def _positions(self, select: Select, w: _Window, window_pts: torch.Tensor) -> List[int]:
        """Validated positions returned by ``select`` for window ``w``."""
        n = int(window_pts.numel())
        where = f"window {w.index} [{w.start}, {w.end})"
        out = select(w.index, window_pts.clone())
        try:
            pos = torch.as_tensor(out)
        except Exception:
            raise ValueError(f"{self.path}: select returned {type(out).__name__} for {where}, "
                             f"expected a 1-D tensor of frame positions") from None
        if pos.dim() != 1 or pos.dtype.is_floating_point or pos.dtype.is_complex or pos.dtype == torch.bool:
            raise ValueError(f"{self.path}: select returned a {pos.dtype} tensor of shape {tuple(pos.shape)} "
                             f"for {where}, expected a 1-D integer tensor of frame positions")
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= n):
            bad = int(pos.min()) if int(pos.min()) < 0 else int(pos.max())
            raise ValueError(f"{self.path}: select returned position {bad} for {where}, "
                             f"which holds {n} decoded frame(s) (positions 0..{n - 1})")
        return pos.tolist()

    def _stack(self, frames: List[np.ndarray]) -> torch.Tensor:
        """Planar ``(3, H, W)`` frames -> ``(3, T, H', W')`` uint8, rotated."""
        if not frames:
            return torch.empty((3, 0, self.height, self.width), dtype=torch.uint8)
        # Built with numpy: plain block copies, no intra-op thread pool
        # (torch's parallel copy is slower for this and suffers badly when
        # DataLoader workers already occupy the cores).
        h, w = frames[0].shape[1:]
        out = np.empty((3, len(frames), h, w), dtype=np.uint8)
        for j, f in enumerate(frames):
            out[:, j] = f
        if self._rotation_k:
            out = np.ascontiguousarray(np.rot90(out, self._rotation_k, axes=(2, 3)))
        return torch.from_numpy(out)


# ---------------------------------------------------------------------------
# PyAV backend


def _planar(hwc: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> contiguous ``(3, H, W)``.

    Done once per kept frame, so that building each clip is plain block
    copies; a channel at a time is several times faster than a strided
    permute copy of uint8 data.
    """
    h, w = hwc.shape[:2]
    out = np.empty((3, h, w), dtype=np.uint8)
    for c in range(3):
        out[c] = hwc[..., c]
    return out


def _rotation_quarters(degrees) -> int:
    """Counterclockwise quarter turns for a display-matrix rotation."""
    if degrees is None:
        return 0
    try:
        d = float(degrees)
    except (TypeError, ValueError):
        return 0
    if math.isnan(d):
        return 0
    return int(round(d / 90.0)) % 4


class PyAVVideo(Video):
    """Video file decoded through PyAV (FFmpeg)."""

    backend = "pyav"

    def __init__(self, path: PathLike, *, threads: Optional[int] = None, fps: Optional[float] = None):
        super().__init__()
        import av  # imported here so that importing videozoo.io stays cheap

        self._av = av
        self.path = os.fspath(path)
        self.threads = threads
        self._container = None
        if not os.path.exists(self.path):
            raise VideoDecodeError(self.path, "file not found")
        if os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            raise VideoDecodeError(self.path, "file is empty (0 bytes)")
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except Exception as exc:  # any FFmpeg/OS failure means "cannot open"
            raise VideoDecodeError(self.path, f"cannot open: {describe(exc)}") from exc
        try:
            self._setup(fps)
        except BaseException:
            self.close()
            raise

    def _setup(self, fps: Optional[float]) -> None:
        c = self._container
        if c.format.name in _NOT_VIDEO_FORMATS:
            raise VideoDecodeError(self.path, f"not a video file (FFmpeg reads it as {c.format.name!r})")
        if not c.streams.video:
            kinds = sorted({s.type for s in c.streams}) or ["none"]
            raise VideoDecodeError(self.path, f"no video stream (streams: {', '.join(kinds)})")
        s = c.streams.video[0]
        self._stream = s
        cc = s.codec_context
        if cc is None or not cc.name:
            raise VideoDecodeError(self.path, "no decoder for the video stream")
        self._configure_threads()
        self._tb = s.time_base
        self._start_pts = s.start_time if s.start_time is not None else 0
        rate = s.average_rate or s.guessed_rate or s.base_rate
        self.fps = float(rate) if rate else float(fps or 0.0)
        w, h = cc.width, cc.height
        if not w or not h:
            raise VideoDecodeError(self.path, "video stream has no frame size (undecodable stream)")
        self._rotation_k = _rotation_quarters(self._stream_rotation())
        if self._rotation_k % 2:
            w, h = h, w
        self.width, self.height = int(w), int(h)
        self._fresh = True  # nothing read yet: the demuxer is at the start
        self.duration = self._probe_duration()

    def _stream_rotation(self):
        # The display matrix is reported on decoded frames; read it from the
        # first frame through a separate handle so the main demuxer stays at
        # the start and the counters only describe clip decoding.
        av = self._av
        try:
            with av.open(self.path, metadata_errors="ignore") as c:
                s = c.streams.video[0]
                for n, packet in enumerate(c.demux(s)):
                    if n > 300:
                        break
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError:
                        continue
                    for frame in frames:
                        return frame.rotation
        except Exception:
            pass
        return 0

    def _probe_duration(self) -> float:
        s, c = self._stream, self._container
        if s.duration:
            return float(s.duration * self._tb)
        if c.duration:
            start = float(c.start_time) / 1e6 if c.start_time else 0.0
            stream_start = float(self._start_pts * self._tb)
            return max(0.0, float(c.duration) / 1e6 - max(0.0, stream_start - start))
        # No header duration: scan packet timestamps (no decoding).
        last = None
        try:
            c.seek(0)
            for p in c.demux(s):
                if p.pts is not None:
                    end = p.pts + (p.duration or 0)
                    last = end if last is None else max(last, end)
        except self._av.error.FFmpegError:
            pass
        self._fresh = False
        if last is None:
            raise VideoDecodeError(self.path, "cannot determine the duration (no timestamps)")
        return float((last - self._start_pts) * self._tb)

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        super().close()

    def _seconds(self, pts: int) -> float:
        # Exact rational arithmetic, rounded once: identical for every pass.
        return float((pts - self._start_pts) * self._tb)

    def _seek(self, t: Optional[float]) -> None:
        if t is None or t <= 0:
            offset = self._start_pts
        else:
            offset = self._start_pts + int(math.floor(Fraction(t) / self._tb))
        self.stats.seeks += 1
        try:
            self._container.seek(offset, stream=self._stream, backward=True, any_frame=False)
        except self._av.error.FFmpegError as exc:
            raise VideoDecodeError(self.path, f"seek to {float(t or 0):.3f} s failed: {describe(exc)}") from exc

    def _reopen(self) -> None:
        self.stats.seeks += 1
        self._container.close()
        try:
            self._container = self._av.open(self.path, metadata_errors="ignore")
        except Exception as exc:
            self._container = None
            raise VideoDecodeError(self.path, f"cannot reopen: {describe(exc)}") from exc
        self._stream = self._container.streams.video[0]
        self._configure_threads()
        self._fresh = False

    def _configure_threads(self) -> None:
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = 0 if self.threads is None else int(self.threads)

    def _iter_frames(self, start_sec: Optional[float]) -> Iterator:
        self._check_open()
        if start_sec is None:
            # A plain decode from the first packet, as a player would do it.
            if not self._fresh:
                self._reopen()
            self._fresh = False
            yield from self._decode_from_current()
            return
        backoff = 0.0
        for attempt in range(_MAX_SEEK_RETRIES):
            target = start_sec - backoff
            at_start = target <= 0 or attempt == _MAX_SEEK_RETRIES - 1
            if not (at_start and self._fresh):
                self._seek(None if at_start else target)
            self._fresh = False
            it = self._decode_from_current()
            head = []
            first_t = None
            skipped = 0
            for item in it:
                if isinstance(item, LostFrame):
                    head.append(item)
                    continue
                # Demuxers without an index (MPEG-TS, ...) can land between
                # keyframes; pictures decoded before the first keyframe lack
                # their references and would differ from a full decode.
                if not item[1].key_frame and skipped < _MAX_LEADING_SKIP:
                    skipped += 1
                    head.clear()
                    continue
                head.append(item)
                first_t = item[0]
                break
            # FFmpeg may land after the requested time (imprecise indexes,
            # open GOPs whose leading frames are dropped): go back further.
            if first_t is not None and first_t <= start_sec:
                yield from head
                yield from it
                return
            if at_start:
                # Seeking to the start is not exact in every demuxer (e.g.
                # MPEG-TS); a fresh handle always starts at the first packet.
                it.close()
                self._reopen()
                yield from self._decode_from_current()
                return
            it.close()
            self.stats.seek_retries += 1
            backoff = max(1.0, backoff * 2)

    def _decode_from_current(self) -> Iterator:
        av = self._av
        s = self._stream
        demux = self._container.demux(s)
        intervals: List[float] = []
        prev_t: Optional[float] = None
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                yield LostFrame(
                    None, 1, f"reading stopped: {describe(exc)}", span=(prev_t if prev_t is not None else 0.0, math.inf)
                )
                return
            self.stats.packets += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                t = self._seconds(packet.pts) if packet.pts is not None else None
                lo = t if t is not None else (prev_t if prev_t is not None else 0.0)
                hi = t + self._frame_interval() if t is not None else math.inf
                yield LostFrame(t, 1, f"undecodable packet ({describe(exc)})", span=(lo, hi))
                continue
            for frame in frames:
                self.stats.frames_decoded += 1
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    t = (prev_t + self._frame_interval()) if prev_t is not None else 0.0
                else:
                    t = self._seconds(pts)
                if prev_t is not None:
                    dt = t - prev_t
                    if dt > 0:
                        typical = float(np.median(intervals)) if intervals else self._frame_interval()
                        if len(intervals) >= 3 and dt > _GAP_FACTOR * typical:
                            n = max(1, int(round(dt / typical)) - 1)
                            yield LostFrame(
                                prev_t + typical,
                                n,
                                f"{n} frame(s) missing between {prev_t:.3f} s and {t:.3f} s",
                                span=(prev_t + typical / 2, t),
                            )
                        else:
                            intervals.append(dt)
                            if len(intervals) > 32:
                                del intervals[0]
                if frame.is_corrupt:
                    yield LostFrame(
                        t, 1, f"damaged frame at {t:.3f} s (decoded with errors)", kept=True,
                        span=(t, t + 1e-9),
                    )
                prev_t = t
                yield t, frame

    def _to_planar(self, frame) -> np.ndarray:
        # The same conversion the reference pipelines use (swscale rgb24).
        return _planar(frame.to_ndarray(format="rgb24"))


# ---------------------------------------------------------------------------
# Frame folders


_NUM_RE = re.compile(r"(\d+)(?!.*\d)")


class FrameFolderVideo(Video):
    """A folder of still images (``img_00001.jpg`` ...) played at ``fps``.

    Frame ``k`` of the sorted listing (numeric order of the last number in
    each name) is shown at ``k / fps`` seconds. Images are decoded with
    PyAV's image decoders, so JPEG and PNG need no further dependency.
    """

    backend = "frames"

    def __init__(self, path: PathLike, *, fps: Optional[float] = None):
        super().__init__()
        import av

        self._av = av
        self.path = os.fspath(path)
        self.fps = float(fps) if fps is not None else 30.0
        if not self.fps > 0:
            raise VideoDecodeError(self.path, f"fps must be positive for a frame folder, got {fps!r}")
        names = [n for n in os.listdir(self.path) if n.lower().endswith(_IMAGE_EXTS)]
        if not names:
            raise VideoDecodeError(self.path, "folder holds no image frames (.jpg/.png)")

        def key(n: str):
            m = _NUM_RE.search(n)
            return (int(m.group(1)) if m else -1, n)

        self.files = [os.path.join(self.path, n) for n in sorted(names, key=key)]
        self.duration = len(self.files) / self.fps
        first = None
        for f in self.files:
            try:
                first = self._read(f)
                break
            except VideoDecodeError:
                continue
        if first is None:
            raise VideoDecodeError(self.path, "no image in the folder could be decoded")
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def _read(self, file: str) -> np.ndarray:
        try:
            with self._av.open(file) as c:
                for frame in c.decode(video=0):
                    self.stats.frames_decoded += 1
                    return frame.to_ndarray(format="rgb24")
        except Exception as exc:
            raise VideoDecodeError(file, f"cannot decode image: {describe(exc)}") from exc
        raise VideoDecodeError(file, "image holds no picture")

    def _iter_frames(self, start_sec: Optional[float]) -> Iterator:
        self._check_open()
        k0 = 0 if start_sec is None else max(0, int(math.floor(start_sec * self.fps)) - 1)
        if start_sec is not None:
            self.stats.seeks += 1
        for k in range(k0, len(self.files)):
            t = k / self.fps
            try:
                arr = self._read(self.files[k])
            except VideoDecodeError as exc:
                yield LostFrame(t, 1, exc.reason, span=(t, t + 1e-9))
                continue
            if arr.shape[:2] != (self.height, self.width):
                yield LostFrame(t, 1, f"{self.files[k]} has size {arr.shape[1]}x{arr.shape[0]}, "
                                f"expected {self.width}x{self.height}", span=(t, t + 1e-9))
                continue
            yield t, arr

    def _to_planar(self, payload) -> np.ndarray:
        return _planar(payload)


# ---------------------------------------------------------------------------
# TorchCodec backend (optional)


class TorchCodecVideo(Video):
    """Video file decoded through TorchCodec, when it is installed.

    TorchCodec does its own seeking and colour conversion, so frames may
    differ slightly from the PyAV backend, and damaged-frame reporting is
    limited to what TorchCodec raises.
    """

    backend = "torchcodec"

    def __init__(self, path: PathLike, *, threads: Optional[int] = None, fps: Optional[float] = None):
        super().__init__()
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise VideoDecodeError(self.path, "file not found")
        if os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            raise VideoDecodeError(self.path, "file is empty (0 bytes)")
        from torchcodec.decoders import VideoDecoder

        try:
            self._dec = VideoDecoder(
                self.path, seek_mode="exact", dimension_order="NCHW", num_ffmpeg_threads=threads or 0
            )
        except Exception as exc:
            raise VideoDecodeError(self.path, f"cannot open: {describe(exc)}") from exc
        md = self._dec.metadata
        self.fps = float(md.average_fps or fps or 0.0)
        self.width, self.height = int(md.width), int(md.height)
        start = float(getattr(md, "begin_stream_seconds", 0.0) or 0.0)
        self._t0 = start
        end = getattr(md, "end_stream_seconds", None)
        self.duration = float(end - start) if end is not None else float(md.duration_seconds or 0.0)

    def _iter_frames(self, start_sec: Optional[float]) -> Iterator:
        self._check_open()
        # TorchCodec seeks exactly itself; decode in chunks from start_sec.
        t = self._t0 + max(0.0, start_sec or 0.0)
        stop = self._t0 + self.duration
        step = 1.0
        if start_sec is not None:
            self.stats.seeks += 1
        while t < stop:
            try:
                batch = self._dec.get_frames_played_in_range(t, min(stop, t + step))
            except Exception as exc:
                yield LostFrame(t - self._t0, 1, f"decoding failed: {describe(exc)}", span=(t - self._t0, math.inf))
                return
            for i in range(batch.data.shape[0]):
                self.stats.frames_decoded += 1
                yield float(batch.pts_seconds[i]) - self._t0, batch.data[i]
            t += step

    def _to_planar(self, payload) -> np.ndarray:
        return payload.contiguous().numpy()

    def close(self) -> None:
        self._dec = None
        super().close()


# ---------------------------------------------------------------------------


def _torchcodec_available() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:
        return False
    return True


def open_video(
    path: PathLike,
    *,
    backend: str = "pyav",
    threads: Optional[int] = None,
    fps: Optional[float] = None,
) -> Video:
    """Open a video file or a folder of frames.

    backend: ``"pyav"`` (default, any container/codec FFmpeg reads),
        ``"torchcodec"`` (needs TorchCodec installed) or ``"auto"``
        (TorchCodec where installed, else PyAV). Folders always use the
        image-folder reader.
    threads: decoder threads; ``None`` lets FFmpeg pick (one per core),
        ``1`` decodes on the calling thread only.
    fps: frame rate of a frame folder (default 30). For video files the
        timestamps always come from the stream; ``fps`` is only used as the
        nominal :attr:`Video.fps` of a stream that declares none.

    Raises :class:`VideoDecodeError` naming the file and the reason when the
    input cannot be opened or holds no decodable video stream.
    """
    p = os.fspath(path)
    if backend not in ("pyav", "torchcodec", "auto"):
        raise ValueError(f"unknown backend {backend!r}; expected 'pyav', 'torchcodec' or 'auto'")
    if os.path.isdir(p):
        return FrameFolderVideo(p, fps=fps)
    if backend == "torchcodec" or (backend == "auto" and _torchcodec_available()):
        if backend == "torchcodec" and not _torchcodec_available():
            raise VideoDecodeError(p, "backend 'torchcodec' requested but TorchCodec is not installed")
        return TorchCodecVideo(p, threads=threads, fps=fps)
    return PyAVVideo(p, threads=threads, fps=fps)
