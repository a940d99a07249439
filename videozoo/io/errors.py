"""Exceptions and warnings raised by :mod:`videozoo.io`."""

from __future__ import annotations

import os


class VideoDecodeError(RuntimeError):
    """A video (or frame folder) could not be opened or a window not decoded.

    The message always names the file and the reason; both are also kept as
    attributes so callers (e.g. a dataset that skips bad samples) can log
    them without parsing text.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class EmptyWindowError(VideoDecodeError):
    """A window holds no decodable frame: it lies in a gap of the timestamps or past a cut end.

    The video itself can be read; a caller may place its windows over the frames that are there.
    """


class StillImageError(VideoDecodeError):
    """The file is a still image (one picture, no motion), given where a video is expected.

    ``kind`` names its format ("PNG", "JPEG", ...). Callers that mean to score pictures as
    one-frame clips open them with ``open_video(..., images=True)``.
    """

    def __init__(self, path: str | os.PathLike, kind: str):
        self.kind = kind
        super().__init__(path, f"is a still image ({kind}), not a video: one picture holds no motion to recognise")


class DamagedVideoWarning(UserWarning):
    """Some frames of a video were damaged or missing but decoding went on."""


def describe(exc: BaseException) -> str:
    """Short reason text for an exception coming from PyAV / FFmpeg / OS."""
    msg: str | None = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"
