"""``open_video``: the right reader for a path, a folder, standard input, a URL or a camera."""

from __future__ import annotations

import os

from .base import Video
from .errors import StillImageError, VideoDecodeError
from .frames import FrameFolderVideo
from .pyav import PyAVVideo
from .source import source_kind
from .still import still_image
from .stream import DEFAULT_STREAM_TIMEOUT_SEC, StreamVideo
from .torchcodec import TorchCodecVideo, torchcodec_available

PathLike = str | os.PathLike
BACKENDS = ("pyav", "torchcodec", "auto")


def open_video(
    path: PathLike,
    *,
    backend: str = "pyav",
    threads: int | None = None,
    fps: float | None = None,
    format: str | None = None,
    timeout: float | None = DEFAULT_STREAM_TIMEOUT_SEC,
    images: bool = False,
) -> Video:
    """Open a video file, a folder of frames or a stream.

    path: a video file; a folder of numbered images; ``"-"`` for a stream
        on standard input (MPEG-TS, Matroska, NUT, ... anything FFmpeg
        reads from a pipe); a URL FFmpeg opens (``rtsp://``, ``http://``,
        ``udp://``, ...); or a V4L2 camera (``/dev/video0``). Streams are
        read in order with :meth:`Video.frames` only (``seekable`` False).
    backend: ``"pyav"`` (default, any container/codec FFmpeg reads),
        ``"torchcodec"`` (needs TorchCodec installed) or ``"auto"``
        (TorchCodec where installed, else PyAV). Folders always use the
        image-folder reader, streams PyAV.
    threads: decoder threads; ``None`` lets FFmpeg pick (one per core),
        ``1`` decodes on the calling thread only.
    fps: frame rate of a frame folder (default 30). For videos the
        timestamps always come from the stream; ``fps`` is only used as the
        nominal :attr:`Video.fps` of a stream that declares none.
    format: an FFmpeg demuxer to use instead of probing (PyAV only), e.g.
        ``"mpegts"``, or ``"h264"`` for a raw H.264 stream on standard input.
    timeout: seconds a URL stream may stay silent, when opening and
        between reads, before it is reported as failed (``None``: wait).
    images: open a still image file (PNG, JPEG, BMP, WebP, TIFF, a one-picture
        GIF) as a one-frame video; by default it is refused with
        :class:`StillImageError`. Animated images and folders of frames are
        videos either way.

    Raises :class:`VideoDecodeError` naming the input and the reason when it
    cannot be opened, holds no decodable video stream, or is something that
    is not a video (a named pipe given as a path, a device that is not a
    camera, a folder without numbered images), at once and without waiting.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected 'pyav', 'torchcodec' or 'auto'")
    p = os.fspath(path)
    kind = source_kind(p)
    if kind == "folder":
        return FrameFolderVideo(p, fps=fps)
    if kind == "file" and not images:
        still = still_image(p)
        if still is not None:
            raise StillImageError(p, still)
    if kind != "file":
        if backend == "torchcodec":
            raise VideoDecodeError(p, f"backend 'torchcodec' reads files only; this is a stream ({kind})")
        return StreamVideo(p, kind=kind, threads=threads, fps=fps, format=format, timeout=timeout)
    if backend == "torchcodec" or (backend == "auto" and format is None and torchcodec_available()):
        if not torchcodec_available():
            raise VideoDecodeError(p, "backend 'torchcodec' requested but TorchCodec is not installed")
        if format is not None:
            raise VideoDecodeError(p, "format= is for the PyAV backend; TorchCodec probes the file itself")
        return TorchCodecVideo(p, threads=threads, fps=fps)
    return PyAVVideo(p, threads=threads, fps=fps, format=format)
