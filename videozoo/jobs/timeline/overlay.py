"""``overlay.mp4``: the input video with the current label and its probability drawn on every frame.

A second sequential pass over the input (so files only: a stream cannot be read again). Every
decoded frame is written, in order, at the input's frame rate, so the overlay has the input's frame
count and rate; the label is the segment holding the frame's time, the probability that label's
smoothed probability interpolated between the windows' centres. H.264 (yuv420p) through PyAV;
frames of odd width or height get one repeated edge column or row. Text is drawn with Pillow's
built-in font on a dark banner, rendered once per distinct text.
"""

from __future__ import annotations

import bisect
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from videozoo.io import open_video
from videozoo.jobs.timeline.result import TimelineResult


class _Banner:
    """Text -> (h, W, 3) uint8 banner images, cached."""

    def __init__(self, width: int, height: int):
        from PIL import ImageFont

        self.width = width
        self.height = max(12, height // 11)
        size = max(9, int(self.height * 0.72))
        try:
            self.font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow before 10.1: one fixed-size bitmap font
            self.font = ImageFont.load_default()
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, text: str) -> np.ndarray:
        img = self._cache.get(text)
        if img is None:
            from PIL import Image, ImageDraw

            banner = Image.new("RGB", (self.width, self.height), (16, 16, 16))
            draw = ImageDraw.Draw(banner)
            try:
                draw.text((4, self.height // 2), text, font=self.font, fill=(255, 255, 255), anchor="lm")
            except ValueError:  # a bitmap font takes no anchor
                draw.text((4, 1), text, font=self.font, fill=(255, 255, 255))
            img = np.asarray(banner)
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[text] = img
        return img


class OverlayText:
    """Time -> ``"label  87%   12.4 s"``: the segment at that time and its smoothed probability."""

    def __init__(self, result: TimelineResult):
        self.segments = result.segments
        self.starts = [s.start for s in result.segments]
        self.centres = np.array([w.center for w in result.windows])
        self.smoothed = result.smoothed

    def __call__(self, t: float) -> str:
        i = bisect.bisect_right(self.starts, t) - 1
        if not self.segments or self.smoothed is None or not len(self.centres):
            return f"{t:.1f} s"
        seg = self.segments[max(i, 0)]
        p = float(np.interp(t, self.centres, self.smoothed[:, seg.index]))
        return f"{seg.label}  {p:4.0%}   {t:.1f} s"


def write_overlay(
    result: TimelineResult,
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    threads: int | None = None,
    crf: int = 20,
) -> Path:
    """Write ``out`` (MP4): ``video`` with ``result``'s label and probability on every frame."""
    out = Path(out)
    tmp = out.with_name(out.stem + ".tmp.mp4")
    with open_video(video, threads=threads) as src:
        if not src.seekable:
            raise ValueError(f"{video}: overlay needs a file (a stream cannot be read a second time)")
        rate = Fraction(src.fps or 25.0).limit_denominator(1001)
        width, height = src.width + src.width % 2, src.height + src.height % 2
        banner = _Banner(width, height)
        text_at = OverlayText(result)
        with av.open(str(tmp), "w", format="mp4") as dst:
            stream = dst.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": str(crf)}
            for n, frame in enumerate(src.frames()):
                rgb = frame.rgb().numpy()  # (3, H, W)
                img = np.ascontiguousarray(rgb.transpose(1, 2, 0))
                if img.shape[:2] != (height, width):
                    img = np.pad(img, ((0, height - img.shape[0]), (0, width - img.shape[1]), (0, 0)), mode="edge")
                text = banner(text_at(frame.pts_sec))
                img[: text.shape[0]] = text
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = n
                vf.time_base = 1 / rate
                dst.mux(stream.encode(vf))
            dst.mux(stream.encode())
    os.replace(tmp, out)
    return out
