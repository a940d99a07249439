"""What every synthetic generator shares: the motion classes, the rendered video, and scene pieces.

The pieces here are the ones both renderers draw with: periodic coloured-noise backgrounds built in
the Fourier domain (a sub-pixel camera shift is a phase ramp, and the texture wraps without seams),
sensor noise, and the map of every pixel into an object's own coordinates on the torus.
"""

from __future__ import annotations

import math
import zlib
from typing import NamedTuple

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

# Diagonal slides: not among the default classes, for tasks beyond the eight (e.g. fine-tuning).
DIAGONAL_CLASSES: tuple[str, ...] = ("move_up_left", "move_up_right", "move_down_left", "move_down_right")

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
    "move_down_right": ("move_diagonal", +1),
    "move_up_left": ("move_diagonal", -1),
    "move_up_right": ("move_antidiagonal", +1),
    "move_down_left": ("move_antidiagonal", -1),
}

# Screen direction (x right, y down) of the +1 class of each slide kind, in degrees.
SLIDE_DIRECTIONS: dict[str, float] = {"move_x": 0.0, "move_y": 90.0, "move_diagonal": 45.0, "move_antidiagonal": -45.0}

OPPOSITE: dict[str, str] = {
    name: other
    for name, (kind, sign) in MOTIONS.items()
    for other, (kind2, sign2) in MOTIONS.items()
    if kind2 == kind and sign2 == -sign
}


class SynthVideo(NamedTuple):
    """One rendered video and where its (first) object is in every frame."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    alpha: np.ndarray  # (T, H, W) float32 coverage of all objects together, in [0, 1]
    center: np.ndarray  # (T, 2) object centre (x, y) in pixels, wrapped into the frame
    radius: np.ndarray  # (T,) semi-major axis in pixels
    angle: np.ndarray  # (T,) orientation in radians, increasing clockwise on screen

    def reversed(self) -> SynthVideo:
        """The same video played backwards (the opposite class)."""
        return SynthVideo(*(np.ascontiguousarray(a[::-1]) for a in self))


def slide_direction(kind: str, deviation: float = 0.0) -> np.ndarray:
    """Unit screen vector of slide `kind` (+1 class), turned by `deviation` radians."""
    angle = math.radians(SLIDE_DIRECTIONS[kind]) + deviation
    vector = np.array([math.cos(angle), math.sin(angle)])
    vector[np.abs(vector) < 1e-12] = 0.0  # exactly along an axis where it is (cos 90 deg is not 0 in floats)
    return vector


def check_class(class_name: str, num_frames: int) -> tuple[str, int]:
    """(motion kind, direction) of ``class_name``, or a ValueError naming what is wrong."""
    if class_name not in MOTIONS:
        raise ValueError(f"unknown motion class {class_name!r}; known: {sorted(MOTIONS)}")
    if num_frames < 2:
        raise ValueError("num_frames must be at least 2")
    return MOTIONS[class_name]


def video_rng(seed: int, class_name: str, index: int) -> np.random.Generator:
    """The generator that renders video ``index`` of ``class_name``.

    Keyed by the class name rather than its position, so a video does not change when the class
    list does.
    """
    key = zlib.crc32(class_name.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, int(index)]))


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """float32 grain of standard deviation ``std`` (0-255 units)."""
    # The sum of two uniform bytes (a triangular distribution) looks like Gaussian grain and costs a
    # tenth of drawing normals.
    count = math.prod(shape)
    pair = np.frombuffer(rng.bytes(2 * count), dtype=np.uint8).reshape(2, *shape)
    noise = pair[0].astype(np.float32)
    noise += pair[1]
    noise -= np.float32(255.0)
    noise *= np.float32(std / math.sqrt(2 * (256**2 - 1) / 12))
    return noise


def random_vector(rng: np.random.Generator, length: float) -> np.ndarray:
    """A 2-vector of the given length in a uniformly random direction."""
    direction = rng.uniform(0.0, 2 * math.pi)
    return length * np.array([math.cos(direction), math.sin(direction)])


class NoiseBackground(NamedTuple):
    spectrum: np.ndarray  # (K, H, W//2+1) complex: K periodic noise fields of unit std
    base: np.ndarray  # (3,) mean colour
    mix: np.ndarray  # (K, 3) colour each field adds per unit of its value


def draw_noise_background(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    slope: tuple[float, float],
    contrast: tuple[float, float],
    fields: int = 2,
) -> NoiseBackground:
    """Periodic coloured noise with a power-law spectrum (``slope``: larger is smoother)."""
    fy = np.fft.fftfreq(height)[:, None] * height  # cycles per frame height
    fx = np.fft.rfftfreq(width)[None, :] * width
    freq = np.hypot(fy / height, fx / width) * min(height, width)  # cycles per short side
    exponent = rng.uniform(*slope)
    envelope = np.where(freq > 0, (freq + 1.0) ** -exponent, 0.0)
    envelope[freq > 0.35 * min(height, width)] = 0.0
    coeff = rng.standard_normal((fields, *freq.shape)) + 1j * rng.standard_normal((fields, *freq.shape))
    spectrum = coeff * envelope
    # Unit standard deviation per field, whatever the resolution.
    power = np.fft.irfft2(spectrum, s=(height, width)).std(axis=(1, 2))
    spectrum /= np.maximum(power, 1e-12)[:, None, None]
    spectrum = spectrum.astype(np.complex64)
    base = rng.uniform(60.0, 196.0, size=3).astype(np.float32)
    mix = (rng.normal(0.0, 1.0, size=(fields, 3)) * rng.uniform(*contrast)).astype(np.float32)
    return NoiseBackground(spectrum, base, mix)


def render_noise_background(bg: NoiseBackground, offset: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) float32 frames of the background seen through a camera displaced by ``offset`` (T, 2)."""
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


def object_coordinates(
    center: np.ndarray, radius: np.ndarray, angle: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel in an object's own coordinates: (u, v), each (T, H, W) float32.

    Radius 1 along the object's major axis (u); offsets from the centre are taken the shortest way
    round the torus, so an object leaving one edge re-enters at the opposite one. y points down, so
    a growing angle turns the object clockwise on screen.
    """
    f32 = np.float32
    xs = np.arange(width, dtype=f32) + f32(0.5)
    ys = np.arange(height, dtype=f32) + f32(0.5)
    cx, cy = center[:, 0].astype(f32), center[:, 1].astype(f32)
    # (T, 1, W) and (T, H, 1)
    dx = (xs[None, None, :] - cx[:, None, None] + f32(width / 2)) % f32(width) - f32(width / 2)
    dy = (ys[None, :, None] - cy[:, None, None] + f32(height / 2)) % f32(height) - f32(height / 2)
    cos = np.cos(angle).astype(f32)[:, None, None]
    sin = np.sin(angle).astype(f32)[:, None, None]
    r = radius.astype(f32)[:, None, None]
    u = (cos * dx + sin * dy) / r  # (T, H, W)
    v = (cos * dy - sin * dx) / r
    return u, v


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Round and clip float frames (in place) to uint8."""
    return np.clip(np.rint(frames, out=frames), 0, 255, out=frames).astype(np.uint8)
