"""Folders of numbered still images (``img_00001.jpg`` ...) played at a frame rate.

A folder's frames are the images whose names follow one numbering pattern:
a fixed prefix, a number (zero-padded to a fixed width, or not padded) and a
fixed suffix ending in an image extension, e.g. ``img_%05d.jpg`` (the I3D /
TSN layout), ``%05d.jpg``, ``frame_%06d.png``, ``image_%d.jpg``. The
pattern most of the folder's images follow is used; other images (a
``cover.png``, ``thumb_01.jpg`` thumbnails) are ignored. Frame number ``n``
is shown at ``(n - first) / fps`` seconds, and numbers missing from the
sequence are reported as lost frames.
"""

from __future__ import annotations

import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .base import Video
from .clip import LostFrame
from .errors import VideoDecodeError, describe
from .rgb import RGBConverter

PathLike = str | os.PathLike

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_FOLDER_FPS = 30.0
# prefix, the last run of digits, a suffix without digits
_NAME_RE = re.compile(r"^(.*?)(\d+)(\D*)$")


@dataclass(frozen=True)
class FramePattern:
    """``prefix`` + number + ``suffix``; ``width`` > 0: zero-padded to that
    width (``%05d``), 0: not padded (``%d``)."""

    prefix: str
    width: int
    suffix: str

    def number(self, name: str) -> int | None:
        """The frame number of ``name``, or None when it does not follow the pattern."""
        m = _NAME_RE.match(name)
        if m is None or m.group(1) != self.prefix or m.group(3) != self.suffix:
            return None
        digits = m.group(2)
        n = int(digits)
        return n if digits == self._digits(n) else None

    def name(self, number: int) -> str:
        return f"{self.prefix}{self._digits(number)}{self.suffix}"

    def _digits(self, n: int) -> str:
        return f"{n:0{self.width}d}" if self.width else str(n)

    def __str__(self) -> str:
        return f"{self.prefix}%{f'0{self.width}' if self.width else ''}d{self.suffix}"


def find_pattern(names: Iterable[str]) -> tuple[FramePattern, dict[int, str]] | None:
    """The numbering pattern most of ``names`` follow and its frames
    ``{number: name}``; None when no image name holds a number.

    Ties go to a zero-padded pattern, then to the shorter printed pattern,
    then to the first in alphabetical order, so the choice never depends on
    the listing order.
    """
    # (prefix, suffix) -> [(digits, name)]
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name in sorted(names):
        if not name.lower().endswith(IMAGE_EXTS):
            continue
        m = _NAME_RE.match(name)
        if m is not None:
            prefix, digits, suffix = m.groups()
            groups.setdefault((prefix, suffix), []).append((digits, name))
    best = None
    for (prefix, suffix), items in sorted(groups.items()):
        # img_00042 can be %05d; img_42 can be %d (or %02d). Padding to
        # one digit is no padding: %01d is %d.
        widths = sorted(
            {len(d) if len(d) > 1 else 0 for d, _ in items}
            | ({0} if any(d == str(int(d)) for d, _ in items) else set())
        )
        for width in widths:
            pattern = FramePattern(prefix, width, suffix)
            frames = {int(d): name for d, name in items if d == pattern._digits(int(d))}
            key = (len(frames), width > 0, -len(str(pattern)))
            if best is None or key > best[0]:
                best = (key, pattern, frames)
    return None if best is None else (best[1], best[2])


class FrameFolderVideo(Video):
    """A folder of numbered still images played at ``fps`` (default 30).

    Attributes beyond :class:`Video`'s: ``pattern`` (printf style, e.g.
    ``"img_%05d.jpg"``), ``files`` (the frames' paths in number order),
    ``numbers`` (their frame numbers) and ``ignored`` (names in the folder
    that are not frames). ``num_frames`` counts the numbering from the first
    to the last frame, missing numbers included. Images are decoded with
    PyAV's image decoders, so JPEG and PNG need no further dependency.
    """

    backend = "frames"

    def __init__(self, path: PathLike, *, fps: float | None = None):
        super().__init__()
        import av

        self._av = av
        self.path = os.fspath(path)
        self.fps = float(fps) if fps is not None else DEFAULT_FOLDER_FPS
        if not self.fps > 0:
            raise VideoDecodeError(self.path, f"fps must be positive for a frame folder, got {fps!r}")
        try:
            listing = sorted(os.listdir(self.path))
        except OSError as exc:
            raise VideoDecodeError(self.path, f"cannot list the folder: {describe(exc)}") from exc
        found = find_pattern(listing)
        if found is None:
            images = [n for n in listing if n.lower().endswith(IMAGE_EXTS)]
            if not images:
                raise VideoDecodeError(self.path, f"folder holds no image frames ({'/'.join(IMAGE_EXTS)})")
            raise VideoDecodeError(
                self.path,
                f"folder holds no numbered image frames (such as img_00001.jpg); "
                f"found {', '.join(images[:3])}{', ...' if len(images) > 3 else ''}",
            )
        self._pattern, by_number = found
        self.pattern = str(self._pattern)
        self.numbers: list[int] = sorted(by_number)
        self.files = [os.path.join(self.path, by_number[n]) for n in self.numbers]
        names = set(by_number.values())
        self.ignored = [n for n in listing if n not in names]
        self._first = self.numbers[0]
        self.num_frames = self.numbers[-1] - self._first + 1
        self.duration = self.num_frames / self.fps
        first = None
        for f in self.files:
            try:
                first = self._decode_image(f)
                break
            except VideoDecodeError:
                continue
        if first is None:
            raise VideoDecodeError(self.path, "no image in the folder could be decoded")
        self.height, self.width = int(first.height), int(first.width)

    def _decode_image(self, file: str):
        try:
            with self._av.open(file) as c:
                for frame in c.decode(video=0):
                    self.stats.frames_decoded += 1
                    return frame
        except Exception as exc:
            raise VideoDecodeError(file, f"cannot decode image: {describe(exc)}") from exc
        raise VideoDecodeError(file, "image holds no picture")

    def _time(self, number: int) -> float:
        return (number - self._first) / self.fps

    def _iter_frames(self, start_sec: float | None) -> Iterator:
        self._check_open()
        nums = self.numbers
        pos = 0
        if start_sec is not None:
            self.stats.seeks += 1
            pos = bisect_left(nums, self._first + int(math.floor(start_sec * self.fps)) - 1)
        prev = nums[pos - 1] if pos > 0 else None
        for k in range(pos, len(nums)):
            n = nums[k]
            if prev is not None and n > prev + 1:
                missing = n - prev - 1
                yield LostFrame(
                    self._time(prev + 1),
                    missing,
                    f"{missing} frame(s) missing from the numbering "
                    f"({self._pattern.name(prev + 1)}{' ... ' + self._pattern.name(n - 1) if missing > 1 else ''})",
                    span=(self._time(prev + 1), self._time(n)),
                )
            prev = n
            t = self._time(n)
            try:
                frame = self._decode_image(self.files[k])
            except VideoDecodeError as exc:
                yield LostFrame(t, 1, f"{self.files[k]}: {exc.reason}", span=(t, t + 1e-9))
                continue
            if (frame.height, frame.width) != (self.height, self.width):
                yield LostFrame(
                    t,
                    1,
                    f"{self.files[k]} has size {frame.width}x{frame.height}, expected {self.width}x{self.height}",
                    span=(t, t + 1e-9),
                )
                continue
            yield t, frame

    @cached_property
    def _rgb(self) -> RGBConverter:
        return RGBConverter()

    def _to_planar(self, frame) -> np.ndarray:
        return self._rgb(frame)
