"""The "classic" scene: one textured object over a drifting textured background.

The object has a random shape (superellipse or polygon with 3 to 6 sides, stretched), a two-colour
texture of a few sine waves and a random size; the background is smooth periodic coloured noise
that drifts slower than any slide, and every frame gets a little sensor noise. The class says what
the object does: slide, grow or shrink, or spin.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from videozoo.data.synth.scene import (
    SLIDE_DIRECTIONS,
    SynthVideo,
    check_class,
    draw_noise_background,
    object_coordinates,
    random_vector,
    render_noise_background,
    sensor_noise,
    slide_direction,
    to_uint8,
)

# Ranges of the random scene parameters. Lengths are fractions of the short side, per frame where
# they are speeds; angles in degrees.
SLIDE_SPEED = (0.015, 0.03)
SPIN_SPEED = (6.0, 10.0)
ZOOM_RATE = (0.045, 0.065)  # change of log(radius) per frame, capped so a video stays in RADIUS
RADIUS = (0.08, 0.45)  # object's semi-major axis over the whole scale range
WANDER_SPEED = 0.002  # slow extra object drift in a random direction, every class
DRIFT_SPEED = 0.005  # background drift, always slower than any slide
BACKGROUND_SLOPE = (1.2, 2.2)  # power-law exponent of the background's spectrum
BACKGROUND_CONTRAST = (4.0, 14.0)  # std of each background noise field's colour, 0-255 units
OBJECT_CONTRAST = 80.0  # least distance between the object's mean colour and the background's
NOISE_STD = (1.0, 4.0)  # in 0-255 units


def render_classic(
    class_name: str,
    rng: np.random.Generator,
    *,
    size: tuple[int, int],
    num_frames: int,
    clutter: float = 1.0,
) -> SynthVideo:
    """One classic video; ``clutter`` scales the background's contrast, its drift and the noise."""
    kind, sign = check_class(class_name, num_frames)
    height, width = size
    short = min(height, width)
    T = num_frames
    t = np.arange(T, dtype=np.float64)

    # Every scene parameter is drawn, in the same order, whatever the class: the class only picks
    # which of them drive the motion. That keeps appearance identically distributed across classes
    # and makes the opposite class the exact reversal of the same draw.
    background = draw_noise_background(rng, height, width, slope=BACKGROUND_SLOPE, contrast=BACKGROUND_CONTRAST)
    obj = _draw_object(rng, background.base)
    start = rng.uniform(0.0, 1.0, size=2) * (width, height)
    angle0 = rng.uniform(0.0, 2 * math.pi)
    slide = rng.uniform(*SLIDE_SPEED) * short
    spin = math.radians(rng.uniform(*SPIN_SPEED))
    log_lo, log_hi = math.log(RADIUS[0]), math.log(RADIUS[1])
    log_span = min(rng.uniform(*ZOOM_RATE) * (T - 1), log_hi - log_lo)
    log_start = rng.uniform(log_lo, log_hi - log_span)
    still_frame = rng.integers(T)  # radius of the non-zoom classes: one frame of a zoom's range
    wander = random_vector(rng, rng.uniform(0.0, WANDER_SPEED) * short)
    drift = random_vector(rng, rng.uniform(0.0, DRIFT_SPEED) * short)
    noise_std = rng.uniform(*NOISE_STD)

    center = start + wander * t[:, None]  # (T, 2)
    angle = np.full(T, angle0)
    log_radius = np.full(T, log_start + log_span * still_frame / (T - 1))
    if kind in SLIDE_DIRECTIONS:
        center += slide * t[:, None] * slide_direction(kind)
    elif kind == "zoom":
        log_radius = log_start + log_span * t / (T - 1)
    elif kind == "rotate":
        angle = angle0 + spin * t
    center %= (width, height)
    radius = np.exp(log_radius) * short

    background = background._replace(mix=background.mix * np.float32(clutter))
    bg = render_noise_background(background, clutter * drift * t[:, None], height, width)  # (T, H, W, 3)
    alpha, colour = _render_object(obj, center, radius, angle, height, width)
    frames = colour
    frames -= bg
    frames *= alpha[..., None]
    frames += bg
    frames += sensor_noise(rng, frames.shape, clutter * noise_std)

    video = SynthVideo(to_uint8(frames), alpha, center, radius, angle % (2 * math.pi))
    return video.reversed() if sign < 0 else video


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
    u, v = object_coordinates(center, radius, angle, height, width)
    r = radius.astype(f32)[:, None, None]

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
