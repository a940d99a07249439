"""Streams: standard input, URLs and cameras, read once, in order, never seeking.

A stream gives its frames as they come (:meth:`Video.frames`); it has no
index to seek in, may never end, and its duration and frame count are
unknown unless its header states them. Opening it reads up to the first
decodable frame, so that the frame size and rotation are known and a source
that holds no video fails at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import Video
from .clip import LostFrame
from .errors import VideoDecodeError, describe
from .pyav import PyAVVideo

# Seconds a network stream may stay silent (when opening, then between
# reads) before it is reported as stalled.
DEFAULT_STREAM_TIMEOUT_SEC = 30.0


class StreamVideo(PyAVVideo):
    """A stream PyAV reads sequentially: ``"-"`` (standard input), a URL or a camera.

    ``kind`` is ``"stdin"``, ``"url"`` or ``"camera"`` (see
    :func:`videozoo.io.source.source_kind`). ``format`` forces a demuxer
    (e.g. ``"mpegts"``, ``"h264"`` for a raw elementary stream, ``"v4l2"``);
    ``timeout`` bounds the waits of URL streams (pipes wait for their writer).
    """

    seekable = False

    def __init__(
        self,
        source: str,
        *,
        kind: str,
        threads: int | None = None,
        fps: float | None = None,
        format: str | None = None,
        timeout: float | None = DEFAULT_STREAM_TIMEOUT_SEC,
    ):
        Video.__init__(self)
        import av

        if kind not in ("stdin", "url", "camera"):
            raise ValueError(f"unknown stream kind {kind!r}; expected 'stdin', 'url' or 'camera'")
        self._av = av
        self.path = source
        self.kind = kind
        self.threads = threads
        self._container = None
        self._started = False
        if kind == "camera" and format is None:
            if "v4l2" not in av.formats_available:
                raise VideoDecodeError(source, "is a camera (V4L2 device), but this FFmpeg build has no v4l2 input")
            format = "v4l2"
        self.format = format
        # Pipes wait for their writer: only network reads are bounded.
        wait = float(timeout) if kind == "url" and timeout is not None else None
        try:
            self._container = av.open(
                "pipe:0" if kind == "stdin" else source, format=format, metadata_errors="ignore", timeout=wait
            )
        except Exception as exc:
            what = "cannot read a video stream from standard input" if kind == "stdin" else "cannot open"
            raise VideoDecodeError(source, f"{what}: {describe(exc)}") from exc
        try:
            self._setup_stream(fps)
            if self._stream.start_time is None:
                self._start_pts = None  # timestamps count from the first frame's
            self._items = self._decode_from_current()
            self._head, first_t = self._skip_to_keyframe(self._items)
            if first_t is None:
                lost = [x for x in self._head if isinstance(x, LostFrame)]
                raise VideoDecodeError(source, "no frame could be decoded" + (f" ({lost[0].reason})" if lost else ""))
            self._set_rotation(self._head[-1][1].rotation)
            self.duration = self._header_duration()
            self.num_frames = int(self._stream.frames) if self._stream.frames else None
        except BaseException:
            self.close()
            raise

    def _header_duration(self) -> float | None:
        s, c = self._stream, self._container
        if s.duration:
            return float(s.duration * self._tb)
        if c.duration:
            return float(c.duration) / 1e6
        return None

    def _seconds(self, pts: int) -> float:
        if self._start_pts is None:
            self._start_pts = pts
        return super()._seconds(pts)

    def _iter_frames(self, start_sec: float | None) -> Iterator:
        self._check_open()
        if start_sec is not None:
            raise VideoDecodeError(self.path, "a stream cannot seek")
        if self._started:
            raise VideoDecodeError(self.path, "the stream was already read (a stream can be read once)")
        self._started = True
        head: list = self._head
        self._head = []
        yield from head
        yield from self._items

    def close(self) -> None:
        items = getattr(self, "_items", None)
        if items is not None:
            items.close()
            self._items = None
        super().close()
