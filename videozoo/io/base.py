"""The :class:`Video` interface and the window logic every backend shares.

A backend provides metadata and one generator, ``_iter_frames``, of decoded
frames in the decoder's own format. On top of it, :class:`Video` validates
windows, sorts them, groups them into runs decoded in one forward pass each,
holds every decoded frame only while an unfinished window contains it, and
converts to RGB only the frames a clip keeps. :meth:`Video.frames` reads the
frames in order without seeking, which is all a stream allows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .clip import Clip, DecodeStats, Frame, LostFrame
from .errors import DamagedVideoWarning, EmptyWindowError, VideoDecodeError
from .progress import beating

# Windows whose starts are further than this past the end of the previous
# window are decoded after a fresh seek instead of decoding the gap.
DEFAULT_SEEK_GAP_SEC = 8.0

# select(window_index, window_pts_sec (N,) float64) -> positions (K,) in 0..N-1
Select = Callable[[int, torch.Tensor], torch.Tensor]
# frame_select(index, pts_sec) -> whether Video.frames yields the frame
FrameSelect = Callable[[int, float], bool]


def planar_rgb(hwc: np.ndarray) -> np.ndarray:
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


@dataclass
class _Window:
    index: int
    start: float
    end: float


class _Held:
    """A decoded frame kept for open windows: the backend's payload until
    some window selects it, then its planar RGB array (the payload is
    released, so a frame is never held twice)."""

    __slots__ = ("t", "payload", "rgb")

    def __init__(self, t: float, payload) -> None:
        self.t = t
        self.payload = payload
        self.rgb: np.ndarray | None = None


class Video:
    """A decodable video: a file, a frame folder or a stream.

    Attributes: ``path``, ``backend``, ``fps``, ``width`` and ``height``
    (after rotation), ``duration`` in seconds and ``num_frames`` (``None``
    where unknown, as for streams), ``seekable`` (False for streams: only
    :meth:`frames` reads them), ``stats`` (:class:`DecodeStats`) and
    ``seek_gap_sec``.

    Backends implement :meth:`_iter_frames` and :meth:`_to_planar`.
    """

    path: str
    backend: str
    fps: float
    width: int  # after rotation
    height: int  # after rotation
    duration: float | None
    num_frames: int | None = None
    seekable = True
    _rotation_k = 0  # counterclockwise quarter turns applied to every frame

    def __init__(self) -> None:
        self.stats = DecodeStats()
        self.seek_gap_sec = DEFAULT_SEEK_GAP_SEC
        self._closed = False
        self._reads = 0  # decoding passes started; tells a frames() iteration it was overtaken

    # -- public API ---------------------------------------------------------

    def get_clip(self, start_sec: float, end_sec: float, *, select: Select | None = None) -> Clip:
        """Frames whose timestamps fall in ``[start_sec, end_sec)``.

        ``select`` is as for :meth:`get_clips` (called with window index 0).
        """
        return self.get_clips([(start_sec, end_sec)], select=select)[0]

    def get_clips(
        self, windows: Sequence[tuple[float, float]], *, select: Select | None = None, warn: bool = True
    ) -> list[Clip]:
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

        Damage inside the windows is listed in each clip's ``lost`` and, unless ``warn`` is False,
        summed up in one :class:`DamagedVideoWarning`.
        """
        self._check_open()
        self._check_seekable("clips of windows cannot be taken")
        wins = [self._check_window(i, s, e) for i, (s, e) in enumerate(windows)]
        if not wins:
            return []
        if select is not None and not callable(select):
            raise TypeError(f"select must be a function (window_index, pts_sec) -> positions, got {select!r}")
        order = sorted(wins, key=lambda w: (w.start, w.end))
        runs: list[list[_Window]] = []
        for w in order:
            if runs and w.start - max(x.end for x in runs[-1]) <= self.seek_gap_sec:
                runs[-1].append(w)
            else:
                runs.append([w])
        clips: list[Clip | None] = [None] * len(wins)
        lost_total: list[LostFrame] = []
        for run in runs:
            for w, clip in self._decode_run(run, select):
                clips[w.index] = clip
                lost_total.extend(x for x in clip.lost if x not in lost_total)
        if lost_total and warn:
            self._warn_lost(lost_total, "in the requested windows ")
        return clips  # type: ignore[return-value]

    def decode_all(self) -> Clip:
        """Every frame of the video from a plain sequential decode."""
        self._check_open()
        self._check_seekable("it is not decoded whole; read its frames with frames()")
        frames: list[np.ndarray] = []
        pts: list[float] = []
        lost: list[LostFrame] = []
        for item in self._read(None):
            if isinstance(item, LostFrame):
                lost.append(item)
                continue
            t, payload = item
            frames.append(self._to_planar(payload))
            self.stats.frames_converted += 1
            pts.append(t)
        if not frames:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        self._check_complete(max(pts), lost)
        order = sorted(range(len(pts)), key=pts.__getitem__)
        clip = Clip(
            self._stack([frames[i] for i in order]),
            torch.tensor([pts[i] for i in order], dtype=torch.float64),
            -math.inf,
            math.inf,
            lost,
        )
        if lost:
            self._warn_lost(lost, "")
        return clip

    def frames(self, *, select: FrameSelect | None = None, warn: bool = True) -> Iterator[Frame]:
        """The frames in decoding order from the start, never seeking.

        Yields :class:`Frame` objects, converted to RGB only when their
        :meth:`Frame.rgb` is called. ``select(index, pts_sec) -> bool``
        skips the frames it rejects (they are never converted). This is the
        one way to read a stream (``seekable`` False); for files and frame
        folders it decodes from the beginning, and another read of the same
        video (:meth:`get_clips`, a new :meth:`frames`) ends the iteration
        with :class:`VideoDecodeError`. Damage is attached to the next
        frame yielded (``Frame.lost``) and, when the iteration ends, one
        :class:`DamagedVideoWarning` sums it up (unless ``warn`` is False).
        """
        self._check_open()
        if select is not None and not callable(select):
            raise TypeError(f"select must be a function (index, pts_sec) -> bool, got {select!r}")
        return self._frames(select, warn)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        fps = f"{self.fps:.3f}" if self.fps else "unknown"
        dur = f"{self.duration:.3f}s" if self.duration is not None else "unknown"
        return f"{type(self).__name__}({self.path!r}, {self.width}x{self.height}, fps={fps}, duration={dur})"

    # -- backend hooks ------------------------------------------------------

    def _iter_frames(self, start_sec: float | None) -> Iterator:
        """Yield ``(pts_sec, payload)`` / :class:`LostFrame` from a position
        whose first frame is at or before ``start_sec`` (or the stream start
        when ``start_sec`` is None or no such position exists)."""
        raise NotImplementedError

    def _to_planar(self, payload) -> np.ndarray:
        """``(3, H, W)`` uint8 RGB array, contiguous, not yet rotated."""
        raise NotImplementedError

    # -- checks -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise VideoDecodeError(self.path, "video is closed")

    def _check_seekable(self, consequence: str) -> None:
        if not self.seekable:
            raise VideoDecodeError(
                self.path,
                f"is a stream (pipe, URL or device) that cannot seek, so {consequence}; "
                "read its frames in order with Video.frames()",
            )

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

    def _check_complete(self, last_t: float, lost: list[LostFrame]) -> None:
        """Report a stream that stopped before its declared duration."""
        if self.duration is not None and last_t + self._frame_interval() * 1.5 < self.duration - 1e-6:
            lost.append(self._ended_early(last_t, self.duration, last_t))

    def _ended_early(self, since: float, until: float, last_t: float) -> LostFrame:
        return LostFrame(
            pts_sec=None,
            count=max(1, int(round((until - since) * self._nominal_fps()))),
            reason=f"stream ended at {max(last_t, 0.0):.3f} s before the declared duration "
            f"{self.duration:.3f} s (file truncated?)",
            ended=True,
            span=(since, math.inf),
        )

    def _nominal_fps(self) -> float:
        return self.fps if self.fps and self.fps > 0 else 25.0

    def _frame_interval(self) -> float:
        return 1.0 / self.fps if self.fps and self.fps > 0 else 0.04

    def _warn_lost(self, lost: list[LostFrame], where: str) -> None:
        n = sum(x.count for x in lost)
        more = ", ..." if len(lost) > 1 else ""
        warnings.warn(
            f"{self.path}: {n} frame(s) damaged or missing {where}({lost[0].reason}{more})",
            DamagedVideoWarning,
            stacklevel=3,
        )

    # -- sequential frames --------------------------------------------------

    def _read(self, start_sec: float | None) -> Iterator:
        self._reads += 1
        # A beat per decoded frame: a worker supervisor tells a long video from a stuck one.
        return beating(self._iter_frames(start_sec))

    def _frames(self, select: FrameSelect | None, warn: bool = True) -> Iterator[Frame]:
        items = self._read(None)
        read = self._reads
        lost_all: list[LostFrame] = []
        lost: list[LostFrame] = []  # reported since the last frame yielded
        index = 0
        last_t = -math.inf
        for item in items:
            if isinstance(item, LostFrame):
                lost.append(item)
                lost_all.append(item)
                continue
            t, payload = item
            index += 1
            last_t = max(last_t, t)
            if select is None or select(index - 1, t):
                yield Frame(index - 1, t, lost, payload, self._frame_rgb)
                lost = []
            if self._reads != read or self._closed:
                items.close()
                raise VideoDecodeError(self.path, "frames() iteration ended: the video was read or closed meanwhile")
        if index == 0:
            raise VideoDecodeError(
                self.path, "no frame could be decoded" + (f" ({lost_all[0].reason})" if lost_all else "")
            )
        self._check_complete(last_t, lost_all)
        if lost_all and warn:
            self._warn_lost(lost_all, "")

    def _frame_rgb(self, payload) -> torch.Tensor:
        arr = self._to_planar(payload)
        self.stats.frames_converted += 1
        if self._rotation_k:
            arr = np.ascontiguousarray(np.rot90(arr, self._rotation_k, axes=(1, 2)))
        return torch.from_numpy(arr)

    # -- windows: one forward pass ------------------------------------------

    def _decode_run(self, run: list[_Window], select: Select | None) -> Iterator[tuple[_Window, Clip]]:
        """Decode one forward pass covering ``run`` (sorted by start)."""
        self.stats.passes += 1
        first = run[0].start
        last_end = max(w.end for w in run)
        # Without a selection every frame of a window is kept, so it is
        # converted as it arrives; with one, conversion waits for the
        # window to complete and covers only the selected frames.
        eager = select is None
        # Decoded frames still needed by an unfinished window, in decoding order.
        held: list[_Held] = []
        lost: list[LostFrame] = []
        pending = list(run)
        last_t = -math.inf
        for item in self._read(first if first > 0 else None):
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

    def _window_clip(self, w: _Window, held: list[_Held], lost: list[LostFrame], select: Select | None) -> Clip:
        # Stable sort: the window's frames by presentation time.
        sel = sorted((x for x in held if w.start <= x.t < w.end), key=lambda x: x.t)
        lost_here = [x for x in lost if x.span[0] < w.end and x.span[1] > w.start]
        if not sel:
            why = f"; {lost_here[0].reason}" if lost_here else ""
            raise EmptyWindowError(self.path, f"no frame decoded in window [{w.start}, {w.end}){why}")
        window_pts = torch.tensor([x.t for x in sel], dtype=torch.float64)
        if select is None:
            positions = list(range(len(sel)))
        else:
            positions = self._positions(select, w, window_pts)
        frames = [self._convert(sel[p]) for p in positions]
        pts = torch.tensor([sel[p].t for p in positions], dtype=torch.float64)
        return Clip(
            self._stack(frames),
            pts,
            w.start,
            w.end,
            lost_here,
            window_pts_sec=window_pts if select is not None else pts,
        )

    def _positions(self, select: Select, w: _Window, window_pts: torch.Tensor) -> list[int]:
        """Validated positions returned by ``select`` for window ``w``."""
        n = int(window_pts.numel())
        where = f"window {w.index} [{w.start}, {w.end})"
        out = select(w.index, window_pts.clone())
        try:
            pos = torch.as_tensor(out)
        except Exception:
            raise ValueError(
                f"{self.path}: select returned {type(out).__name__} for {where}, "
                f"expected a 1-D tensor of frame positions"
            ) from None
        if pos.dim() != 1 or pos.dtype.is_floating_point or pos.dtype.is_complex or pos.dtype == torch.bool:
            raise ValueError(
                f"{self.path}: select returned a {pos.dtype} tensor of shape {tuple(pos.shape)} "
                f"for {where}, expected a 1-D integer tensor of frame positions"
            )
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= n):
            bad = int(pos.min()) if int(pos.min()) < 0 else int(pos.max())
            raise ValueError(
                f"{self.path}: select returned position {bad} for {where}, "
                f"which holds {n} decoded frame(s) (positions 0..{n - 1})"
            )
        return pos.tolist()

    def _stack(self, frames: list[np.ndarray]) -> torch.Tensor:
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
