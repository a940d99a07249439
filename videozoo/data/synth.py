"""Synthetic action videos whose classes differ only in how things move.

Every video shows one textured object over a textured background that drifts slowly in a random
direction. The class says what the object does: slide left/right/up/down, grow or shrink, or spin
clockwise or counterclockwise (as seen on screen). Everything else (shape, texture, colours, size,
position, background, drift, sensor noise) is drawn from the same distributions for every class.

Opposite classes are exact time reversals of each other: rendering ``move_left`` from a random
generator in a given state gives the frames of ``move_right`` from the same state played backwards.
Time reversal maps the appearance distribution onto itself (drift directions are uniform, noise is
independent per frame), so for a pair of opposite classes any orderless summary of the frames (one
frame picked at random, a histogram, the mean of per-frame features) has the same distribution under
both classes, and only a model that uses frame order can tell them apart. Positions live on a torus
(an object leaving one edge comes back at the other) and start angles are uniform, so for the
slides and spins even the frame at a fixed index carries no class information; for the zooms that
holds once the index is unknown (a zoom-in clip starts small).

Sizes, speeds and drift are given relative to the short side of the picture, so a dataset renders
the same scenes at any resolution. The files are H.264 MP4s; next to them go ``train.txt`` and
``val.txt`` (``relative/path.mp4 class_name`` lines), ``classes.txt`` and ``synth.json``.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

DEFAULT_CLASSES: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "zoom_in",
    "zoom_out",
    "rotate_cw",
    "rotate_ccw",
)

# class name -> (motion kind, direction); direction -1 is the +1 class played backwards.
MOTIONS: dict[str, tuple[str, int]] = {
    "move_right": ("move_x", +1),
    "move_left": ("move_x", -1),
    "move_down": ("move_y", +1),
    "move_up": ("move_y", -1),
    "zoom_in": ("zoom", +1),
    "zoom_out": ("zoom", -1),
    "rotate_cw": ("rotate", +1),
    "rotate_ccw": ("rotate", -1),
}

OPPOSITE: dict[str, str] = {
    name: other
    for name, (kind, sign) in MOTIONS.items()
    for other, (kind2, sign2) in MOTIONS.items()
    if kind2 == kind and sign2 == -sign
}

_ENCODERS = {"h264": "libx264", "x264": "libx264", "libx264": "libx264"}

# Ranges of the random scene parameters. Lengths are fractions of the short side, per frame where
# they are speeds; angles in degrees.
SLIDE_SPEED = (0.015, 0.03)
SPIN_SPEED = (6.0, 10.0)
ZOOM_RATE = (0.045, 0.065)  # change of log(radius) per frame, capped so a video stays in RADIUS
RADIUS = (0.08, 0.45)  # object's semi-major axis over the whole scale range
WANDER_SPEED = 0.002  # slow extra object drift in a random direction, every class
DRIFT_SPEED = 0.005  # background drift, always slower than any slide
BACKGROUND_CONTRAST = (4.0, 14.0)  # std of each background noise field's colour, 0-255 units
OBJECT_CONTRAST = 80.0  # least distance between the object's mean colour and the background's
NOISE_STD = (1.0, 4.0)  # in 0-255 units


class SynthVideo(NamedTuple):
    """One rendered video and where its object is in every frame."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    alpha: np.ndarray  # (T, H, W) float32 object coverage in [0, 1]
    center: np.ndarray  # (T, 2) object centre (x, y) in pixels, wrapped into the frame
    radius: np.ndarray  # (T,) semi-major axis in pixels
    angle: np.ndarray  # (T,) orientation in radians, increasing clockwise on screen


@dataclass(frozen=True)
class DatasetInfo:
    """Where :func:`make_dataset` put things and what it rendered."""

    root: Path
    classes: tuple[str, ...]
    train_list: Path
    val_list: Path
    classes_file: Path
    num_train: int
    num_val: int
    size: tuple[int, int]
    num_frames: int
    fps: float
    seed: int


def video_rng(seed: int, class_name: str, index: int) -> np.random.Generator:
    """The generator that renders video ``index`` of ``class_name``.

    Keyed by the class name rather than its position, so a video does not change when the class
    list does.
    """
    key = zlib.crc32(class_name.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, int(index)]))


def render_video(
    class_name: str,
    rng: np.random.Generator | int,
    *,
    size: tuple[int, int] = (112, 112),
    num_frames: int = 32,
    clutter: float = 1.0,
) -> SynthVideo:
    """Render one video of ``class_name`` (see :data:`MOTIONS`) from ``rng`` (or a seed).

    ``clutter`` scales the background's contrast, its drift and the sensor noise: 0 gives a flat
    background and clean frames, with the same object and motion as any other value.
    """
    if class_name not in MOTIONS:
        raise ValueError(f"unknown motion class {class_name!r}; known: {sorted(MOTIONS)}")
    if num_frames < 2:
        raise ValueError("num_frames must be at least 2")
    kind, sign = MOTIONS[class_name]
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    height, width = size
    short = min(height, width)
    T = num_frames
    t = np.arange(T, dtype=np.float64)

    # Every scene parameter is drawn, in the same order, whatever the class: the class only picks
    # which of them drive the motion. That keeps appearance identically distributed across classes
    # and makes the opposite class the exact reversal of the same draw.
    background = _draw_background(rng, height, width)
    obj = _draw_object(rng, background.base)
    start = rng.uniform(0.0, 1.0, size=2) * (width, height)
    angle0 = rng.uniform(0.0, 2 * math.pi)
    slide = rng.uniform(*SLIDE_SPEED) * short
    spin = math.radians(rng.uniform(*SPIN_SPEED))
    log_lo, log_hi = math.log(RADIUS[0]), math.log(RADIUS[1])
    log_span = min(rng.uniform(*ZOOM_RATE) * (T - 1), log_hi - log_lo)
    log_start = rng.uniform(log_lo, log_hi - log_span)
    still_frame = rng.integers(T)  # radius of the non-zoom classes: one frame of a zoom's range
    wander = _random_vector(rng, rng.uniform(0.0, WANDER_SPEED) * short)
    drift = _random_vector(rng, rng.uniform(0.0, DRIFT_SPEED) * short)
    noise_std = rng.uniform(*NOISE_STD)

    center = start + wander * t[:, None]  # (T, 2)
    angle = np.full(T, angle0)
    log_radius = np.full(T, log_start + log_span * still_frame / (T - 1))
    if kind == "move_x":
        center[:, 0] += slide * t
    elif kind == "move_y":
        center[:, 1] += slide * t
    elif kind == "zoom":
        log_radius = log_start + log_span * t / (T - 1)
    elif kind == "rotate":
        angle = angle0 + spin * t
    center %= (width, height)
    radius = np.exp(log_radius) * short

    background = background._replace(mix=background.mix * np.float32(clutter))
    bg = _render_background(background, clutter * drift * t[:, None], height, width)  # (T, H, W, 3)
    alpha, colour = _render_object(obj, center, radius, angle, height, width)
    frames = colour
    frames -= bg
    frames *= alpha[..., None]
    frames += bg
    frames += _sensor_noise(rng, frames.shape, clutter * noise_std)
    frames = np.clip(np.rint(frames, out=frames), 0, 255, out=frames).astype(np.uint8)

    video = SynthVideo(frames, alpha, center, radius, angle % (2 * math.pi))
    if sign < 0:
        video = SynthVideo(*(np.ascontiguousarray(a[::-1]) for a in video))
    return video


def _sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    # The sum of two uniform bytes (a triangular distribution) looks like Gaussian grain and costs a
    # tenth of drawing normals.
    count = math.prod(shape)
    pair = np.frombuffer(rng.bytes(2 * count), dtype=np.uint8).reshape(2, *shape)
    noise = pair[0].astype(np.float32)
    noise += pair[1]
    noise -= np.float32(255.0)
    noise *= np.float32(std / math.sqrt(2 * (256**2 - 1) / 12))
    return noise


def _random_vector(rng: np.random.Generator, length: float) -> np.ndarray:
    direction = rng.uniform(0.0, 2 * math.pi)
    return length * np.array([math.cos(direction), math.sin(direction)])


class _Background(NamedTuple):
    spectrum: np.ndarray  # (K, H, W//2+1) complex: K periodic noise fields
    base: np.ndarray  # (3,) mean colour
    mix: np.ndarray  # (K, 3) colour each field adds per unit of its value


def _draw_background(rng: np.random.Generator, height: int, width: int) -> _Background:
    # Periodic coloured noise built in the Fourier domain: shifting it by any sub-pixel offset is a
    # phase ramp, and it wraps around the frame without seams.
    fields = 2
    fy = np.fft.fftfreq(height)[:, None] * height  # cycles per frame height
    fx = np.fft.rfftfreq(width)[None, :] * width
    freq = np.hypot(fy / height, fx / width) * min(height, width)  # cycles per short side
    slope = rng.uniform(1.2, 2.2)
    envelope = np.where(freq > 0, (freq + 1.0) ** -slope, 0.0)
    envelope[freq > 0.35 * min(height, width)] = 0.0
    coeff = rng.standard_normal((fields, *freq.shape)) + 1j * rng.standard_normal((fields, *freq.shape))
    spectrum = coeff * envelope
    # Unit standard deviation per field, whatever the resolution.
    power = np.fft.irfft2(spectrum, s=(height, width)).std(axis=(1, 2))
    spectrum /= np.maximum(power, 1e-12)[:, None, None]
    spectrum = spectrum.astype(np.complex64)
    base = rng.uniform(60.0, 196.0, size=3).astype(np.float32)
    mix = (rng.normal(0.0, 1.0, size=(fields, 3)) * rng.uniform(*BACKGROUND_CONTRAST)).astype(np.float32)
    return _Background(spectrum, base, mix)


def _render_background(bg: _Background, offset: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) float32 frames of the background seen through a camera displaced by ``offset``."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    # Content moves by +offset, so frame t samples the texture at (x - ox, y - oy).
    turns = offset[:, 0, None, None] * fx + offset[:, 1, None, None] * fy  # (T, H, W//2+1)
    phase = np.exp(-2j * np.pi * turns).astype(np.complex64)
    fields = np.fft.irfft2(bg.spectrum[None] * phase[:, None], s=(height, width))  # (T, K, H, W)
    colour = np.empty((len(offset), height, width, 3), dtype=np.float32)
    for c in range(3):
        colour[..., c] = bg.base[c]
        for k in range(len(bg.mix)):
            colour[..., c] += bg.mix[k, c] * fields[:, k]
    return colour


class _Object(NamedTuple):
    polygon_sides: int  # 0 for a superellipse
    exponent: float  # superellipse exponent (2 is an ellipse)
    aspect: float  # minor / major axis
    waves: np.ndarray  # (J, 3): spatial frequency x, y (cycles per radius) and phase
    sharpness: float
    colours: np.ndarray  # (2, 3)


def _draw_object(rng: np.random.Generator, background: np.ndarray) -> _Object:
    sides = int(rng.choice([0, 0, 3, 4, 5, 6]))
    exponent = rng.uniform(2.0, 5.0)
    aspect = rng.uniform(0.45, 0.8)
    count = 3
    freq = rng.uniform(0.6, 2.0, size=count)
    direction = rng.uniform(0.0, 2 * math.pi, size=count)
    phase = rng.uniform(0.0, 2 * math.pi, size=count)
    waves = np.stack([freq * np.cos(direction), freq * np.sin(direction), phase], axis=1)
    sharpness = rng.uniform(0.8, 4.0)
    while True:
        colours = rng.uniform(0.0, 255.0, size=(2, 3))
        if np.linalg.norm(colours.mean(axis=0) - background) >= OBJECT_CONTRAST:
            break
    return _Object(sides, exponent, aspect, waves, sharpness, colours)


def _render_object(
    obj: _Object, center: np.ndarray, radius: np.ndarray, angle: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (T, H, W) and colour (T, H, W, 3) of the object at the given poses."""
    f32 = np.float32
    xs = np.arange(width, dtype=f32) + f32(0.5)
    ys = np.arange(height, dtype=f32) + f32(0.5)
    cx, cy = center[:, 0].astype(f32), center[:, 1].astype(f32)
    # Offsets from the centre on the torus: (T, 1, W) and (T, H, 1).
    dx = (xs[None, None, :] - cx[:, None, None] + f32(width / 2)) % f32(width) - f32(width / 2)
    dy = (ys[None, :, None] - cy[:, None, None] + f32(height / 2)) % f32(height) - f32(height / 2)
    cos = np.cos(angle).astype(f32)[:, None, None]
    sin = np.sin(angle).astype(f32)[:, None, None]
    r = radius.astype(f32)[:, None, None]
    # Object coordinates (radius 1 along its major axis); y points down, so a growing angle turns
    # the object clockwise on screen.
    u = (cos * dx + sin * dy) / r  # (T, H, W)
    v = (cos * dy - sin * dx) / r

    su, sv = u, v / f32(obj.aspect)
    if obj.polygon_sides:
        n = obj.polygon_sides
        sector = f32(2 * math.pi / n)
        theta = np.arctan2(sv, su)  # angle from the centre of the nearest edge, within +-sector/2
        theta -= sector * np.floor(theta / sector) + sector / 2
        extent = np.sqrt(su * su + sv * sv) * np.cos(theta) / f32(math.cos(math.pi / n))
    else:
        p = f32(obj.exponent)
        extent = (np.abs(su) ** p + np.abs(sv) ** p) ** (1 / p)
    # About one pixel of soft edge, measured along the minor axis.
    alpha = np.clip((1 - extent) * r * f32(obj.aspect) + f32(0.5), 0, 1)

    pattern = np.zeros_like(u)
    for fu, fv, phase in obj.waves:
        pattern += np.sin(f32(2 * math.pi * fu) * u + f32(2 * math.pi * fv) * v + f32(phase))
    weight = 0.5 + 0.5 * np.tanh(f32(obj.sharpness / math.sqrt(len(obj.waves))) * pattern)
    c0, c1 = obj.colours.astype(f32)
    colour = c0 + weight[..., None] * (c1 - c0)
    return alpha.astype(f32), colour


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    fps: float | Fraction = 15,
    codec: str = "h264",
    crf: int = 18,
) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames as an MP4 (yuv420p, so H and W must be even).

    One encoder thread keeps the bytes identical across machines with different core counts.
    """
    path = Path(path)
    encoder = _ENCODERS.get(codec, codec)
    T, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {height}x{width}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        if encoder == "libx264":
            stream.options = {"preset": "veryfast", "crf": str(crf)}
        for index in range(T):
            frame = av.VideoFrame.from_ndarray(frames[index], format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def make_dataset(
    out_dir: str | os.PathLike,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    videos_per_class: int = 24,
    val_fraction: float = 0.25,
    seed: int = 0,
    size: tuple[int, int] = (112, 112),
    num_frames: int = 32,
    fps: float = 15,
    codec: str = "h264",
    crf: int = 18,
    clutter: float = 1.0,
    workers: int = 1,
) -> DatasetInfo:
    """Render and encode a labelled dataset into ``out_dir``.

    Layout: ``<class>/<class>_0000.mp4`` per video (a folder per class), ``train.txt`` and
    ``val.txt`` with one ``<class>/<class>_0000.mp4 <class>`` line per video (paths relative to
    ``out_dir``), ``classes.txt`` (one name per line, label index = line number) and ``synth.json``
    (the arguments). In each class the last ``round(videos_per_class * val_fraction)`` videos are
    held out for validation. The same arguments give the same files, whatever ``workers`` (the
    number of processes rendering in parallel). ``clutter`` is passed to :func:`render_video`.
    """
    classes = tuple(classes)
    unknown = [c for c in classes if c not in MOTIONS]
    if unknown:
        raise ValueError(f"unknown motion classes {unknown}; known: {sorted(MOTIONS)}")
    if len(set(classes)) != len(classes):
        raise ValueError("classes must not repeat")
    num_val = int(round(videos_per_class * val_fraction))
    if not 0 <= num_val < videos_per_class:
        raise ValueError("need at least one training video per class")
    size = (int(size[0]), int(size[1]))
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {size[0]}x{size[1]}")

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    train_lines: list[str] = []
    val_lines: list[str] = []
    jobs = []
    for name in classes:
        (root / name).mkdir(exist_ok=True)
        for index in range(videos_per_class):
            relative = f"{name}/{name}_{index:04d}.mp4"
            jobs.append((name, index, root / relative))
            held_out = index >= videos_per_class - num_val
            (val_lines if held_out else train_lines).append(f"{relative} {name}")
    # Each video depends only on (seed, class, index), so the files do not depend on `workers`.
    render = partial(
        _render_and_write,
        seed=seed, size=size, num_frames=num_frames, clutter=clutter, fps=fps, codec=codec, crf=crf,
    )
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(render, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        for job in jobs:
            render(job)

    _write_lines(root / "train.txt", train_lines)
    _write_lines(root / "val.txt", val_lines)
    _write_lines(root / "classes.txt", classes)
    params = {
        "generator": "videozoo.data.synth",
        "classes": list(classes),
        "videos_per_class": videos_per_class,
        "val_fraction": val_fraction,
        "seed": seed,
        "size": list(size),
        "num_frames": num_frames,
        "fps": float(fps),
        "codec": codec,
        "crf": crf,
        "clutter": clutter,
        "num_train": len(train_lines),
        "num_val": len(val_lines),
    }
    (root / "synth.json").write_text(json.dumps(params, indent=2) + "\n")
    return DatasetInfo(
        root=root,
        classes=classes,
        train_list=root / "train.txt",
        val_list=root / "val.txt",
        classes_file=root / "classes.txt",
        num_train=len(train_lines),
        num_val=len(val_lines),
        size=size,
        num_frames=num_frames,
        fps=float(fps),
        seed=seed,
    )


def _render_and_write(
    job: tuple[str, int, Path], *, seed, size, num_frames, clutter, fps, codec, crf
) -> None:
    name, index, path = job
    rng = video_rng(seed, name, index)
    video = render_video(name, rng, size=size, num_frames=num_frames, clutter=clutter)
    write_video(path, video.frames, fps=fps, codec=codec, crf=crf)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))
