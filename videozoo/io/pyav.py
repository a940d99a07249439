"""Video files decoded through PyAV (FFmpeg): exact seeking and damage detection."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from fractions import Fraction
from functools import cached_property

import numpy as np

from .base import Video
from .clip import LostFrame
from .errors import VideoDecodeError, describe
from .rgb import RGBConverter
from .source import check_file

PathLike = str | os.PathLike

# Formats FFmpeg "reads" that are not videos: tty renders any text file.
NOT_VIDEO_FORMATS = {"tty"}
# A jump between frames longer than this many typical intervals is reported
# as missing frames. Large enough that ordinary variable frame rate (e.g.
# 30 -> 10 fps stretches) is not mistaken for damage.
GAP_FACTOR = 4.0
MAX_SEEK_RETRIES = 12
# After a seek (or when joining a stream), at most this many non-key
# pictures are discarded while waiting for a keyframe (streams without
# keyframe flags still decode).
MAX_LEADING_SKIP = 64


def rotation_quarters(degrees) -> int:
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
    """Video file decoded through PyAV (FFmpeg).

    ``format`` forces an FFmpeg demuxer (e.g. ``"mpegts"``) instead of
    probing the file.
    """

    backend = "pyav"

    def __init__(
        self, path: PathLike, *, threads: int | None = None, fps: float | None = None, format: str | None = None
    ):
        super().__init__()
        import av  # imported here so that importing videozoo.io stays cheap

        self._av = av
        self.path = os.fspath(path)
        self.threads = threads
        self.format = format
        self._container = None
        check_file(self.path)
        try:
            self._container = av.open(self.path, format=format, metadata_errors="ignore")
        except Exception as exc:  # any FFmpeg/OS failure means "cannot open"
            raise VideoDecodeError(self.path, f"cannot open: {describe(exc)}") from exc
        try:
            self._setup_stream(fps)
            self._set_rotation(self._stream_rotation())
            self._fresh = True  # nothing read yet: the demuxer is at the start
            self.duration = self._probe_duration()
            self.num_frames = int(self._stream.frames) if self._stream.frames else None
        except BaseException:
            self.close()
            raise

    # -- opening ------------------------------------------------------------

    def _setup_stream(self, fps: float | None) -> None:
        """Pick the video stream and read what its header says."""
        c = self._container
        if c.format.name in NOT_VIDEO_FORMATS:
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
        if not cc.width or not cc.height:
            raise VideoDecodeError(self.path, "video stream has no frame size (undecodable stream)")

    def _set_rotation(self, degrees) -> None:
        cc = self._stream.codec_context
        self._rotation_k = rotation_quarters(degrees)
        w, h = (cc.height, cc.width) if self._rotation_k % 2 else (cc.width, cc.height)
        self.width, self.height = int(w), int(h)

    def _stream_rotation(self):
        # The display matrix is reported on decoded frames; read it from the
        # first frame through a separate handle so the main demuxer stays at
        # the start and the counters only describe clip decoding.
        av = self._av
        try:
            with av.open(self.path, format=self.format, metadata_errors="ignore") as c:
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

    # -- positioning ----------------------------------------------------------

    def _seconds(self, pts: int) -> float:
        # Exact rational arithmetic, rounded once: identical for every pass.
        return float((pts - self._start_pts) * self._tb)

    def _seek(self, t: float | None) -> None:
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
            self._container = self._av.open(self.path, format=self.format, metadata_errors="ignore")
        except Exception as exc:
            self._container = None
            raise VideoDecodeError(self.path, f"cannot reopen: {describe(exc)}") from exc
        self._stream = self._container.streams.video[0]
        self._configure_threads()
        self._fresh = False

    def _configure_threads(self) -> None:
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = 0 if self.threads is None else int(self.threads)

    # -- decoding -----------------------------------------------------------

    def _iter_frames(self, start_sec: float | None) -> Iterator:
        self._check_open()
        if start_sec is None:
            # A plain decode from the first packet, as a player would do it.
            if not self._fresh:
                self._reopen()
            self._fresh = False
            yield from self._decode_from_current()
            return
        backoff = 0.0
        for attempt in range(MAX_SEEK_RETRIES):
            target = start_sec - backoff
            at_start = target <= 0 or attempt == MAX_SEEK_RETRIES - 1
            if not (at_start and self._fresh):
                self._seek(None if at_start else target)
            self._fresh = False
            it = self._decode_from_current()
            head, first_t = self._skip_to_keyframe(it)
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

    @staticmethod
    def _skip_to_keyframe(it: Iterator):
        """Read ``it`` up to its first keyframe: (items to yield, its time).

        Demuxers without an index (MPEG-TS, ...) can land between keyframes,
        and a stream can be joined mid-GOP; pictures decoded before the first
        keyframe lack their references and would differ from a full decode.
        """
        head: list = []
        skipped = 0
        for item in it:
            if isinstance(item, LostFrame):
                head.append(item)
                continue
            if not item[1].key_frame and skipped < MAX_LEADING_SKIP:
                skipped += 1
                head.clear()
                continue
            head.append(item)
            return head, item[0]
        return head, None

    def _decode_from_current(self) -> Iterator:
        av = self._av
        demux = self._container.demux(self._stream)
        intervals: list[float] = []
        prev_t: float | None = None
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
                        if len(intervals) >= 3 and dt > GAP_FACTOR * typical:
                            n = max(1, int(round(dt / typical)) - 1)
                            yield LostFrame(
                                prev_t + typical,
                                n,
                                f"{n} frame(s) missing between {prev_t:.3f} s and {t:.3f} s",
                                gap=True,
                                span=(prev_t + typical / 2, t),
                            )
                        else:
                            intervals.append(dt)
                            if len(intervals) > 32:
                                del intervals[0]
                if frame.is_corrupt:
                    yield LostFrame(
                        t,
                        1,
                        f"damaged frame at {t:.3f} s (decoded with errors)",
                        kept=True,
                        span=(t, t + 1e-9),
                    )
                prev_t = t
                yield t, frame

    @cached_property
    def _rgb(self) -> RGBConverter:
        return RGBConverter()

    def _to_planar(self, frame) -> np.ndarray:
        # The same conversion the reference pipelines use (swscale rgb24), on a context of this
        # video's own with no slice threads: safe across fork (videozoo.io.rgb).
        return self._rgb(frame)
