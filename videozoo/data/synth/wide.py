"""The "wide" scene: many kinds of objects, backgrounds and imaging conditions, for training models
that should recognise the motion itself rather than one look of it.

A video shows one to three objects, all doing the class's motion (each slides in the class's
direction, give or take a few degrees, at its own speed; each grows, shrinks or spins about its own
centre). Objects are drawn from several shapes (superellipses from diamond to rectangle, long thin
bars, polygons, stars, rings, crosses, and rectangular textured patches) and textures fixed to the
object, so that they turn and scale with it (sine waves, stripes, checks, spokes, fine noise, a
linear shading), at random sizes and speeds; zooms change the size slowly (a tenth per second) or
fast (three times per second), and a turning object may be symmetric in outline (a disc, a square)
so that only its texture shows the turn. About a third of the objects are faint: their colours lie
close to the background's. Backgrounds are coloured noise from smooth to fine, a sharp pattern of
stripes or checks, flat regions with hard edges (like a photograph's), or a smooth colour gradient;
they drift in a random direction (slower than any slide) and the camera shakes a little. The frames
brighten or darken over the video, flicker, and carry sensor noise of random strength.

As in the classic scene, every parameter is drawn in the same order whatever the class, and the
opposite class is the exact time reversal of the same draw.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from videozoo.data.synth.scene import (
    SLIDE_DIRECTIONS,
    NoiseBackground,
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
OBJECT_COUNT_P = (0.5, 0.3, 0.2)  # probability of 1, 2, 3 objects
SLIDE_SPEED = (0.012, 0.045)
SLIDE_HEADING = 12.0  # largest deviation of a slide from the class's direction, degrees
SPIN_SPEED = (2.5, 11.0)
ZOOM_RATE = (0.007, 0.07)  # change of log(radius) per frame (drawn log-uniform), capped to stay in RADIUS
RADIUS = (0.05, 0.4)  # semi-major axis of a lone object over the whole scale range
CROWD_SCALE = (1.0, 0.85, 0.75)  # radius scale with 1, 2, 3 objects
WANDER_SPEED = 0.003  # slow extra drift of each object in a random direction, every class
DRIFT_SPEED = 0.006  # background drift, at most half the slowest slide
SHAKE = 0.005  # largest std of the per-frame camera jitter
EDGE_SOFTNESS = (0.6, 2.0)  # pixels
OBJECT_CONTRAST = 60.0  # least distance between an object's mean colour and the background's
FAINT_P = 0.3  # probability of a faint object
FAINT_CONTRAST = (12.0, 40.0)  # distance of a faint object's colours from the background's mean
BACKGROUND_KINDS = ("noise", "noise", "pattern", "regions", "smooth")
BRIGHTNESS_RAMP = 0.35  # largest change of log brightness over the video
FLICKER = 0.04  # largest std of the per-frame log brightness
NOISE_STD = (0.0, 8.0)  # in 0-255 units

SHAPES = ("ellipse", "ellipse", "bar", "polygon", "star", "ring", "cross", "patch")
TEXTURES = ("waves", "stripes", "stripes", "checks", "spokes", "noise", "shading")


class _Background(NamedTuple):
    noise: NoiseBackground  # the drifting texture (its mix is near zero for "smooth")
    regions: NoiseBackground | None  # "regions": noise cut by tanh into flat patches with hard edges
    regions_sharpness: float
    pattern: np.ndarray  # (J, 3): frequency x, y (cycles per pixel), phase; J = 0 without a pattern
    pattern_sharpness: float
    pattern_colour: np.ndarray  # (3,) colour amplitude of the pattern
    gradient: np.ndarray  # (2, 3): colour change per short side along x and along y (static)


class _Look(NamedTuple):
    shape: str
    sides: int  # polygon sides, star points
    exponent: float  # superellipse exponent
    aspect: float  # minor / major axis
    inner: float  # ring: inner radius; star: depth of the notches; cross: arm half-width
    texture: str
    waves: np.ndarray  # (J, 3): frequency u, v (cycles per radius) and phase; spokes: (count, -, phase)
    sharpness: float
    colours: np.ndarray  # (2, 3)
    softness: float  # edge width in pixels


class _Path(NamedTuple):
    start: np.ndarray  # (2,) position in pixels
    angle0: float
    slide: float  # pixels per frame
    heading: float  # radians off the class's direction
    spin: float  # radians per frame
    log_start: float  # log(radius / short side) where a zoom starts
    log_span: float  # a zoom's total change of log radius
    still_frame: int  # the frame of the zoom range whose size the other classes take
    wander: np.ndarray  # (2,) pixels per frame


def render_wide(
    class_name: str,
    rng: np.random.Generator,
    *,
    size: tuple[int, int],
    num_frames: int,
    clutter: float = 1.0,
) -> SynthVideo:
    """One wide-variety video; ``clutter`` scales background texture, drift, shake and noise."""
    kind, sign = check_class(class_name, num_frames)
    height, width = size
    short = min(height, width)
    T = num_frames
    t = np.arange(T, dtype=np.float64)

    background = _draw_background(rng, height, width)
    count = 1 + int(rng.choice(len(OBJECT_COUNT_P), p=OBJECT_COUNT_P))
    looks = [_draw_look(rng, background.noise.base) for _ in range(count)]
    paths = [_draw_path(rng, T, short, width, height, CROWD_SCALE[count - 1]) for _ in range(count)]
    drift = random_vector(rng, rng.uniform(0.0, DRIFT_SPEED) * short)
    shake = rng.standard_normal((T, 2)) * rng.uniform(0.0, SHAKE) * short
    ramp = rng.uniform(-BRIGHTNESS_RAMP, BRIGHTNESS_RAMP)
    flicker = rng.standard_normal(T) * rng.uniform(0.0, FLICKER)
    noise_std = rng.uniform(*NOISE_STD)

    camera = clutter * (drift * t[:, None] + shake)  # (T, 2) content offset
    frames = _render_background(background, camera, clutter, height, width)  # (T, H, W, 3)
    coverage = np.zeros((T, height, width), dtype=np.float32)
    poses = []
    for look, path in zip(looks, paths, strict=False):
        center, radius, angle = _pose(path, kind, T, short)
        center = (center + clutter * shake) % (width, height)
        alpha, colour = _render_object(look, center, radius, angle, height, width)
        colour -= frames
        colour *= alpha[..., None]
        frames += colour
        coverage += alpha * (1 - coverage)
        poses.append((center, radius, angle))
    gain = np.exp(ramp * (t / (T - 1) - 0.5) + flicker).astype(np.float32)
    frames *= gain[:, None, None, None]
    frames += sensor_noise(rng, frames.shape, clutter * noise_std)

    center, radius, angle = poses[0]
    video = SynthVideo(to_uint8(frames), coverage, center, radius, angle % (2 * math.pi))
    return video.reversed() if sign < 0 else video


# -- background -----------------------------------------------------------------------------------


def _draw_background(rng: np.random.Generator, height: int, width: int) -> _Background:
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    contrast = {"noise": (3.0, 20.0), "pattern": (0.0, 6.0), "regions": (0.0, 6.0), "smooth": (0.0, 3.0)}[kind]
    noise = draw_noise_background(rng, height, width, slope=(0.8, 2.5), contrast=contrast)
    short = min(height, width)
    regions = None
    if kind == "regions":
        # Smooth fields whose sign flips draw blotches of flat colour with sharp borders.
        regions = draw_noise_background(rng, height, width, slope=(1.8, 3.0), contrast=(20.0, 45.0), fields=3)
        regions = regions._replace(base=np.zeros(3, dtype=np.float32))
    if kind == "pattern":
        count = int(rng.integers(1, 3))  # stripes, or checks from two crossing wave trains
        freq = rng.uniform(2.0, 8.0, size=count) / short
        direction = rng.uniform(0.0, math.pi, size=count)
        if count == 2:
            direction[1] = direction[0] + math.pi / 2
        phase = rng.uniform(0.0, 2 * math.pi, size=count)
        pattern = np.stack([freq * np.cos(direction), freq * np.sin(direction), phase], axis=1)
    else:
        pattern = np.zeros((0, 3))
    sharpness = rng.uniform(1.0, 5.0)
    pattern_colour = rng.normal(0.0, 1.0, size=3) * rng.uniform(10.0, 35.0)
    gradient = rng.normal(0.0, 1.0, size=(2, 3)) * rng.uniform(0.0, 30.0)
    regions_sharpness = rng.uniform(2.0, 8.0)
    return _Background(noise, regions, regions_sharpness, pattern, sharpness, pattern_colour, gradient)


def _render_background(bg: _Background, camera: np.ndarray, clutter: float, height: int, width: int) -> np.ndarray:
    f32 = np.float32
    noise = bg.noise._replace(mix=bg.noise.mix * f32(clutter))
    frames = render_noise_background(noise, camera, height, width)  # (T, H, W, 3)
    if bg.regions is not None:
        field = render_noise_background(bg.regions, camera, height, width)  # (T, H, W, 3), std ~ contrast
        scale = f32(np.abs(bg.regions.mix).sum(axis=0).max() + 1e-6)
        frames += np.tanh(field * f32(bg.regions_sharpness / scale)) * (f32(0.5) * scale * f32(clutter))
    short = min(height, width)
    xs = (np.arange(width, dtype=f32) + f32(0.5)) / f32(short) - f32(width / (2 * short))
    ys = (np.arange(height, dtype=f32) + f32(0.5)) / f32(short) - f32(height / (2 * short))
    frames += (xs[:, None] * bg.gradient[0].astype(f32))[None, None]
    frames += (ys[:, None] * bg.gradient[1].astype(f32))[None, :, None]
    if len(bg.pattern):
        px = np.arange(width, dtype=f32)[None, None, :] + f32(0.5) - camera[:, 0, None, None].astype(f32)
        py = np.arange(height, dtype=f32)[None, :, None] + f32(0.5) - camera[:, 1, None, None].astype(f32)
        product = np.ones((len(camera), height, width), dtype=f32)
        for fx, fy, phase in bg.pattern:
            product *= np.sin(f32(2 * math.pi * fx) * px + f32(2 * math.pi * fy) * py + f32(phase))
        value = np.tanh(f32(bg.pattern_sharpness) * product)
        frames += value[..., None] * (bg.pattern_colour.astype(f32) * f32(clutter))
    return frames


# -- objects --------------------------------------------------------------------------------------


def _draw_look(rng: np.random.Generator, background: np.ndarray) -> _Look:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    sides = int(rng.integers(3, 8))
    exponent = rng.uniform(1.4, 6.0) if shape != "patch" else rng.uniform(6.0, 12.0)
    # Ellipses and polygons are sometimes exactly symmetric (a disc, a square): only the texture
    # shows them turn.
    aspect = {"patch": (0.5, 1.0), "bar": (0.15, 0.3)}.get(shape, (0.4, 1.0))
    aspect = min(1.0, rng.uniform(aspect[0], aspect[1] + 0.1))
    inner = rng.uniform(*{"ring": (0.35, 0.7), "star": (0.25, 0.55), "cross": (0.2, 0.45)}.get(shape, (0.0, 1.0)))
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))] if shape != "patch" else "noise"
    count = {"waves": 3, "noise": 8}.get(texture, 2)
    high = {"noise": 4.5, "checks": 2.2, "stripes": 3.5}.get(texture, 2.0)
    freq = rng.uniform(0.6, high, size=count)
    direction = rng.uniform(0.0, 2 * math.pi, size=count)
    if texture == "checks":
        direction[1] = direction[0] + math.pi / 2
        freq[1] = freq[0]
    phase = rng.uniform(0.0, 2 * math.pi, size=count)
    waves = np.stack([freq * np.cos(direction), freq * np.sin(direction), phase], axis=1)
    if texture == "spokes":  # 3 to 8 spokes round the centre
        waves[0, :2] = (float(rng.integers(3, 9)), 0.0)
    sharpness = rng.uniform(0.8, 5.0)
    faint = rng.random() < FAINT_P
    faint_offset = rng.normal(0.0, 1.0, size=(2, 3))
    faint_contrast = rng.uniform(*FAINT_CONTRAST, size=2)
    for _ in range(1000):
        colours = rng.uniform(0.0, 255.0, size=(2, 3))
        if np.linalg.norm(colours.mean(axis=0) - background) >= OBJECT_CONTRAST:
            break
    if faint:  # both colours near the background's mean, and near each other
        offset = faint_offset / np.linalg.norm(faint_offset, axis=1, keepdims=True)
        colours = np.clip(background + offset * faint_contrast[:, None], 0.0, 255.0)
    softness = rng.uniform(*EDGE_SOFTNESS)
    return _Look(shape, sides, exponent, aspect, inner, texture, waves, sharpness, colours, softness)


def _draw_path(rng: np.random.Generator, T: int, short: int, width: int, height: int, scale: float) -> _Path:
    start = rng.uniform(0.0, 1.0, size=2) * (width, height)
    angle0 = rng.uniform(0.0, 2 * math.pi)
    slide = rng.uniform(*SLIDE_SPEED) * short
    heading = math.radians(rng.uniform(-SLIDE_HEADING, SLIDE_HEADING))
    spin = math.radians(rng.uniform(*SPIN_SPEED))
    log_lo, log_hi = math.log(RADIUS[0] * scale), math.log(RADIUS[1] * scale)
    rate = math.exp(rng.uniform(math.log(ZOOM_RATE[0]), math.log(ZOOM_RATE[1])))
    log_span = min(rate * (T - 1), log_hi - log_lo)
    log_start = rng.uniform(log_lo, log_hi - log_span)
    still_frame = int(rng.integers(T))
    wander = random_vector(rng, rng.uniform(0.0, WANDER_SPEED) * short)
    return _Path(start, angle0, slide, heading, spin, log_start, log_span, still_frame, wander)


def _pose(path: _Path, kind: str, T: int, short: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (T, 2), radius (T,) and angle (T,) of an object following `path` for motion `kind`."""
    t = np.arange(T, dtype=np.float64)
    center = path.start + path.wander * t[:, None]
    angle = np.full(T, path.angle0)
    log_radius = np.full(T, path.log_start + path.log_span * path.still_frame / (T - 1))
    if kind in SLIDE_DIRECTIONS:
        center += path.slide * t[:, None] * slide_direction(kind, path.heading)
    elif kind == "zoom":
        log_radius = path.log_start + path.log_span * t / (T - 1)
    elif kind == "rotate":
        angle = path.angle0 + path.spin * t
    return center, np.exp(log_radius) * short, angle


def _render_object(
    look: _Look, center: np.ndarray, radius: np.ndarray, angle: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (T, H, W) and colour (T, H, W, 3) of one object at the given poses."""
    f32 = np.float32
    u, v = object_coordinates(center, radius, angle, height, width)
    r = radius.astype(f32)[:, None, None]
    inside = _signed_distance(look, u, v)  # object units, positive inside
    alpha = np.clip(inside * r / f32(look.softness) + f32(0.5), 0, 1)

    if look.texture == "spokes":
        count, _, phase = look.waves[0]
        spokes = np.sin(f32(count) * np.arctan2(v, u) + f32(phase))
        weight = 0.5 + 0.5 * np.tanh(f32(look.sharpness) * spokes)
    elif look.texture == "shading":
        # A linear ramp across the object: what spins or zooms is its direction and its scale.
        fu, fv, _ = look.waves[0]
        weight = np.clip(f32(0.5) + f32(0.5 * fu) * u + f32(0.5 * fv) * v, 0, 1)
    else:
        waves = [
            np.sin(f32(2 * math.pi * fu) * u + f32(2 * math.pi * fv) * v + f32(phase)) for fu, fv, phase in look.waves
        ]
        if look.texture == "checks":  # two crossing wave trains multiplied
            pattern, norm = waves[0] * waves[1], 1.0
        else:
            pattern, norm = sum(waves[1:], waves[0]), math.sqrt(len(waves))
        weight = 0.5 + 0.5 * np.tanh(f32(look.sharpness / norm) * pattern)
    c0, c1 = look.colours.astype(f32)
    colour = c0 + weight[..., None] * (c1 - c0)
    return alpha.astype(f32), colour


def _signed_distance(look: _Look, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """About the distance to the outline, in object units (radius 1), positive inside."""
    f32 = np.float32
    a = f32(look.aspect)
    su, sv = u, v / a
    if look.shape in ("ellipse", "patch", "bar"):
        p = f32(look.exponent)
        return (1 - (np.abs(su) ** p + np.abs(sv) ** p) ** (1 / p)) * a
    if look.shape == "polygon":
        n = look.sides
        sector = f32(2 * math.pi / n)
        theta = np.arctan2(sv, su)
        theta -= sector * np.floor(theta / sector) + sector / 2
        extent = np.sqrt(su * su + sv * sv) * np.cos(theta) / f32(math.cos(math.pi / n))
        return (1 - extent) * a
    rho = np.sqrt(su * su + sv * sv)
    if look.shape == "star":
        edge = 1 - f32(look.inner) * (0.5 - 0.5 * np.cos(f32(look.sides) * np.arctan2(sv, su)))
        return (edge - rho) * a
    if look.shape == "ring":
        return np.minimum(1 - rho, rho - f32(look.inner)) * a
    if look.shape == "cross":
        au, av = np.abs(u), np.abs(v)
        w = f32(look.inner)
        return np.maximum(np.minimum(1 - au, w - av), np.minimum(w - au, 1 - av))
    raise ValueError(f"unknown shape {look.shape!r}")
