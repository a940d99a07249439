"""What a video path names: a file, a frame folder, standard input, a URL or a camera.

Everything else (named pipes, sockets, other devices) is refused at once with
the reason, because opening it would block waiting for a writer or read
bytes that never form a video.
"""

from __future__ import annotations

import os
import re
import stat
import sys

from .errors import VideoDecodeError

STDIN = "-"
# scheme://... as FFmpeg's protocols take them (rtsp://, http://, udp://, srt://, ...)
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Linux's character-device major number of Video4Linux devices (/dev/video*).
_V4L_MAJOR = 81


def is_url(path: str) -> bool:
    return bool(_URL_RE.match(path))


def source_kind(path: str) -> str:
    """``"file"``, ``"folder"``, ``"stdin"``, ``"url"`` or ``"camera"``.

    Raises :class:`VideoDecodeError` for a path that does not exist or is
    none of these.
    """
    if path == STDIN:
        _check_stdin()
        return "stdin"
    if is_url(path):
        return "url"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError(path, "file not found") from None
    except OSError as exc:
        raise VideoDecodeError(path, f"cannot access: {exc.strerror or exc}") from None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        raise VideoDecodeError(
            path,
            "is a named pipe (FIFO), not a video file: opening it would wait for a writer; "
            "to read a stream from it, pass '-' and redirect the pipe to standard input (< pipe)",
        )
    if stat.S_ISCHR(mode):
        if sys.platform.startswith("linux") and os.major(st.st_rdev) == _V4L_MAJOR:
            return "camera"
        raise VideoDecodeError(path, "is a character device that is not a camera (V4L2 video device), not a video file")
    if stat.S_ISBLK(mode):
        raise VideoDecodeError(path, "is a block device, not a video file")
    if stat.S_ISSOCK(mode):
        raise VideoDecodeError(path, "is a socket, not a video file")
    raise VideoDecodeError(path, "is not a regular file")


def check_file(path: str) -> None:
    """Raise unless ``path`` is a non-empty regular file (what seeking backends read)."""
    kind = source_kind(path)
    if kind == "folder":
        raise VideoDecodeError(path, "is a directory; open_video reads it as a folder of frames")
    if kind != "file":
        raise VideoDecodeError(
            path, f"is a stream ({kind}), not a file; open it with open_video, which reads it without seeking"
        )
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")


def _check_stdin() -> None:
    try:
        st = os.fstat(0)
    except OSError:
        raise VideoDecodeError(STDIN, "standard input is closed") from None
    if os.isatty(0):
        raise VideoDecodeError(
            STDIN,
            "standard input is a terminal; pipe a video stream into it "
            "(e.g. `... < video.ts` or `ffmpeg ... -f mpegts - | ...`)",
        )
    if stat.S_ISDIR(st.st_mode):
        raise VideoDecodeError(STDIN, "standard input is a directory")
