"""Small synthetic videos for tests, written with PyAV.

The ``"counter"`` pattern writes each frame's index as a binary code of large
black/white blocks (two rows of eight blocks in the top two thirds of the
picture, least significant bit first). The blocks are big and saturated so
the index survives lossy compression at any quality an encoder will pick;
:func:`read_index` recovers it from a decoded RGB frame. The bottom third
holds a bar moving one column per frame so that encoders see real motion and
produce predicted (and, if enabled, bidirectional) frames.

Typical use::

    from videogen import make_video, read_index
    path = make_video(tmp_path / "a.mp4", codec="h264", num_frames=60)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PathLike = str | os.PathLike

# 16 bits: indices up to 65535, far more than any test video holds.
_BITS_X = 8
_BITS_Y = 2
_DARK = 16
_LIGHT = 235

_CODEC_ALIASES = {
    "h264": "libx264",
    "x264": "libx264",
    "vp9": "libvpx-vp9",
    "vp8": "libvpx",
}


def counter_frame(index: int, width: int, height: int) -> np.ndarray:
    """The ``(height, width, 3)`` uint8 RGB picture that encodes ``index``."""
    img = np.full((height, width, 3), 128, dtype=np.uint8)
    code_h = (height * 2) // 3
    for bit in range(_BITS_X * _BITS_Y):
        bx, by = bit % _BITS_X, bit // _BITS_X
        x0, x1 = bx * width // _BITS_X, (bx + 1) * width // _BITS_X
        y0, y1 = by * code_h // _BITS_Y, (by + 1) * code_h // _BITS_Y
        img[y0:y1, x0:x1] = _LIGHT if (index >> bit) & 1 else _DARK
    bar_w = max(2, width // 8)
    x = (index * 1) % max(1, width - bar_w)
    img[code_h:, :] = 60
    img[code_h:, x : x + bar_w] = (200, 40, 40)
    return img


def read_index(rgb: np.ndarray) -> int:
    """Recover the frame index from a decoded counter frame.

    ``rgb`` is ``(H, W, 3)`` or ``(3, H, W)`` (uint8 numpy array or torch
    tensor), in the orientation it was encoded in.
    """
    a = np.asarray(rgb)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    height, width = a.shape[:2]
    gray = a.astype(np.float32).mean(axis=2)
    code_h = (height * 2) // 3
    index = 0
    for bit in range(_BITS_X * _BITS_Y):
        bx, by = bit % _BITS_X, bit // _BITS_X
        x0, x1 = bx * width // _BITS_X, (bx + 1) * width // _BITS_X
        y0, y1 = by * code_h // _BITS_Y, (by + 1) * code_h // _BITS_Y
        # Sample the block's interior: edges bleed under chroma subsampling.
        mx, my = max(0, (x1 - x0) // 4), max(0, (y1 - y0) // 4)
        block = gray[y0 + my : y1 - my or None, x0 + mx : x1 - mx or None]
        if block.mean() > 128:
            index |= 1 << bit
    return index


def noise_frame(index: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Random RGB noise, reproducible per (seed, index); hard to compress."""
    rng = np.random.default_rng((seed, index))
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def make_video(
    path: PathLike,
    *,
    codec: str = "h264",
    container: str | None = None,
    fps: int | float | Fraction | str = 30,
    num_frames: int = 60,
    width: int = 64,
    height: int = 48,
    pattern: str = "counter",
    bframes: bool | int = False,
    gop: int = 15,
    rotate: int | None = None,
    pix_fmt: str | None = None,
    timestamps: Sequence[float] | None = None,
    audio: bool = False,
    quality: int | None = None,
    seed: int = 0,
    frames: np.ndarray | None = None,
) -> Path:
    """Encode a synthetic video and return its path.

    codec: an FFmpeg encoder name or an alias (``h264``, ``vp9``, ``vp8``;
        ``mpeg4``, ``mjpeg``, ``ffv1`` are used as is).
    container: FFmpeg muxer name; by default guessed from the extension.
    fps: nominal frame rate; a string such as ``"30000/1001"`` is exact.
    bframes: ``True`` for 2 B-frames between references, or a count.
    gop: keyframe interval in frames.
    rotate: counterclockwise display rotation stored as a display matrix.
    timestamps: presentation times in seconds, one per frame, for a
        variable frame rate; the stream time base is then 1/90000 s.
    audio: also write a short mp2/aac/opus audio track.
    quality: encoder quality knob (``crf`` for x264/vp9, ``qscale`` else).
    frames: (T, H, W, 3) uint8 RGB images to encode instead of the synthetic
        pattern (``num_frames``, ``width`` and ``height`` are then taken from it).
    """
    path = Path(path)
    enc = _CODEC_ALIASES.get(codec, codec)
    rate = Fraction(fps) if not isinstance(fps, float) else Fraction(fps).limit_denominator(1001)
    if frames is not None:
        num_frames, height, width = frames.shape[:3]
    if timestamps is not None:
        num_frames = len(timestamps)
    if pix_fmt is None:
        pix_fmt = {"mjpeg": "yuvj420p", "ffv1": "yuv444p"}.get(enc, "yuv420p")

    out = av.open(str(path), "w", format=container)
    try:
        stream = out.add_stream(enc, rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        # The muxer may replace stream.time_base once writing starts, so
        # frames keep their own copy of the encoding time base.
        tb = Fraction(1, 90000) if timestamps is not None else 1 / rate
        stream.time_base = tb
        stream.codec_context.time_base = tb
        nb = (2 if bframes is True else int(bframes)) if bframes else 0
        opts = {"g": str(gop)}
        if enc == "libx264":
            opts.update({"bf": str(nb), "preset": "veryfast", "crf": str(quality or 18)})
            if nb:
                # Closed GOPs are x264's default; pin it so seeks stay exact.
                opts["x264-params"] = "open-gop=0"
        elif enc in ("libvpx-vp9", "libvpx"):
            opts.update({"deadline": "realtime", "cpu-used": "8", "crf": str(quality or 20), "b": "0"})
        elif enc in ("mpeg4", "mpeg2video", "mpeg1video", "mjpeg"):
            opts["qscale"] = str(quality or 3)
            if nb:
                opts["bf"] = str(nb)
        stream.options = opts
        if enc == "mpeg4" or enc == "mjpeg":
            stream.codec_context.qscale = quality or 3  # type: ignore[attr-defined]
        if rotate is not None:
            stream.set_display_rotation(rotate)

        astream = None
        if audio:
            astream = _add_audio(out, path)

        for i in range(num_frames):
            if frames is not None:
                img = np.ascontiguousarray(frames[i])
            elif pattern == "counter":
                img = counter_frame(i, width, height)
            else:
                img = noise_frame(i, width, height, seed)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int(round(timestamps[i] * 90000)) if timestamps is not None else i
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)

        if astream is not None:
            seconds = timestamps[-1] if timestamps is not None else num_frames / rate
            _write_audio(out, astream, float(seconds))
    finally:
        out.close()
    return path


def _add_audio(out, path: Path):
    ext = path.suffix.lower()
    codec = {".webm": "libopus", ".mp4": "aac", ".mov": "aac", ".m4a": "aac"}.get(ext, "mp2")
    if codec not in av.codecs_available:
        codec = "mp2"
    astream = out.add_stream(codec, rate=48000)
    astream.layout = "stereo"
    return astream


def _write_audio(out, astream, seconds: float) -> None:
    rate = 48000
    n = max(1, int(seconds * rate))
    t = np.arange(n, dtype=np.float32) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frame_size = astream.codec_context.frame_size or 1152
    fmt = astream.codec_context.format.name
    pts = 0
    for start in range(0, n, frame_size):
        chunk = tone[start : start + frame_size]
        if len(chunk) < frame_size:
            chunk = np.pad(chunk, (0, frame_size - len(chunk)))
        if fmt.endswith("p"):
            data = np.stack([chunk, chunk])
        else:
            data = np.stack([chunk, chunk], axis=1).reshape(1, -1)
        if fmt.startswith("s16"):
            data = (data * 32767).astype(np.int16)
        elif fmt.startswith("s32"):
            data = (data * 2147483647).astype(np.int32)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts = pts
        pts += frame_size
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def make_audio_only(path: PathLike, *, seconds: float = 1.0, codec: str | None = None) -> Path:
    """A file holding one audio stream and no video stream."""
    path = Path(path)
    out = av.open(str(path), "w")
    try:
        if codec is None:
            astream = _add_audio(out, path)
        else:
            astream = out.add_stream(codec, rate=48000)
            astream.layout = "stereo"
        _write_audio(out, astream, seconds)
    finally:
        out.close()
    return path


def make_frame_folder(
    folder: PathLike,
    *,
    num_frames: int = 30,
    width: int = 64,
    height: int = 48,
    ext: str = "jpg",
    template: str = "img_{:05d}",
    first_index: int = 1,
    pattern: str = "counter",
) -> Path:
    """A folder of still images ``img_00001.jpg``... (the I3D frame layout)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        img = counter_frame(i, width, height) if pattern == "counter" else noise_frame(i, width, height)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        name = template.format(i + first_index) + "." + ext
        if ext.lower() in ("jpg", "jpeg"):
            frame.save(str(folder / name), qscale=2)
        else:
            frame.save(str(folder / name))
    return folder


def corrupt_bytes(path: PathLike, *, at: float = 0.5, length: int = 2048, seed: int = 0) -> Path:
    """Overwrite ``length`` bytes at fraction ``at`` of the file with noise."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    rng = np.random.default_rng(seed)
    end = min(len(data), start + length)
    data[start:end] = rng.integers(0, 256, size=end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def truncate(path: PathLike, *, keep: float = 0.5) -> Path:
    """Cut the file to the first ``keep`` fraction of its bytes."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def vfr_timestamps(num_frames: int, *, seed: int = 0, low: float = 1 / 60, high: float = 1 / 10) -> list:
    """Strictly increasing irregular timestamps starting at 0."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(low, high, size=num_frames - 1)
    return [0.0] + [float(x) for x in np.cumsum(steps).round(4)]


def iter_indices(frames_cthw) -> Iterable[int]:
    """Frame indices of a ``(C, T, H, W)`` clip of counter frames."""
    a = np.asarray(frames_cthw)
    for t in range(a.shape[1]):
        yield read_index(a[:, t])
