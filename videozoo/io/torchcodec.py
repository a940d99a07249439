"""Video files decoded through TorchCodec, when it is installed (optional backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np

from .base import Video
from .clip import LostFrame
from .errors import VideoDecodeError, describe
from .source import check_file

PathLike = str | os.PathLike


def torchcodec_available() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:
        return False
    return True


class TorchCodecVideo(Video):
    """Video file decoded through TorchCodec.

    TorchCodec does its own seeking and colour conversion, so frames may
    differ slightly from the PyAV backend, and damaged-frame reporting is
    limited to what TorchCodec raises. Its frames arrive in RGB already, so
    ``select`` saves the copies into the clip but no conversion.
    """

    backend = "torchcodec"

    def __init__(self, path: PathLike, *, threads: int | None = None, fps: float | None = None):
        super().__init__()
        self.path = os.fspath(path)
        check_file(self.path)
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
        frames = getattr(md, "num_frames", None)
        self.num_frames = int(frames) if frames else None

    def _iter_frames(self, start_sec: float | None) -> Iterator:
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
