"""A third generator of the eight screen motions, independent of videozoo.data.synth and motiongen2.

It draws what neither of the others does: one elongated object (an ellipse, a bar, a rhombus or a
stadium, two to five times longer than wide) covered by straight stripes fixed to it, so that the
stripes turn, slide and scale with the object, at low contrast against a smooth backdrop (the
object's colour a dozen to fifty levels from the backdrop's, the stripes as faint). Its method shares
nothing with the others either:

- every pixel is sampled on a 3x3 grid of points and the object is a hard inside/outside test at
  each point, with hard-edged square-wave stripes, averaged (supersampling, no analytic soft edge
  and no sprite);
- the backdrop is value noise: random values on a lattice, blended with a smoothstep, at two
  octaves, evaluated at the camera's position, so the camera drifts and shakes by any fraction of a
  pixel;
- an object's pose is integrated forward in time from velocities given per second, one segment after
  another: a clip is one segment; a sequence chains several with a continuous pose, so one object
  slides, then grows, then turns, with no cut between them;
- frames carry Gaussian grain and are encoded with H.264 at 12 to 30 fps.

Screen conventions: x right, y down; a growing angle turns the object clockwise on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CLASSES = ("move_left", "move_right", "move_up", "move_down", "zoom_in", "zoom_out", "rotate_cw", "rotate_ccw")
FRAME_RATES = (12, 15, 24, 25, 30)
FRAME_SIZES = ((96, 128), (112, 112), (90, 160), (128, 96), (108, 144))  # (H, W)
SHAPES = ("ellipse", "bar", "rhombus", "stadium")
SUPERSAMPLE = 3
# Screen direction of each slide.
SLIDES = {"move_left": (-1.0, 0.0), "move_right": (1.0, 0.0), "move_up": (0.0, -1.0), "move_down": (0.0, 1.0)}


@dataclass(frozen=True)
class Look:
    shape: str
    elongation: float  # long / short axis
    stripe_period: float  # in units of the half-length
    stripe_angle: float  # radians, relative to the long axis
    stripe_phase: float
    body: np.ndarray  # (3,) colour
    stripe: np.ndarray  # (3,) colour


@dataclass(frozen=True)
class Camera:
    lattice: list[np.ndarray]  # per octave: (N, N, 3) random colours on a lattice
    cells: list[float]  # lattice spacing in pixels per octave
    drift: np.ndarray  # (2,) pixels per second the backdrop moves on screen
    shake: float  # per-frame jitter std, pixels
    grain: float  # sensor noise std, 0-255 units


@dataclass
class Pose:
    x: float
    y: float
    half_length: float  # pixels
    angle: float  # radians, clockwise on screen


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: int
    label: str


# -- the backdrop ---------------------------------------------------------------------------------


def _make_camera(rng: np.random.Generator, short: int) -> tuple[Camera, np.ndarray]:
    base = rng.uniform(50.0, 200.0, size=3)
    octaves, cells = [], []
    for spacing, amplitude in ((rng.uniform(0.3, 0.6) * short, rng.uniform(10.0, 30.0)), (0.08 * short, 6.0)):
        octaves.append(rng.normal(0.0, amplitude, size=(32, 32, 3)))
        cells.append(spacing)
    octaves[0] = octaves[0] + base  # the coarse octave carries the mean colour
    heading = rng.uniform(0.0, 2 * math.pi)
    drift = rng.uniform(0.0, 0.07) * short * np.array([math.cos(heading), math.sin(heading)])
    camera = Camera(octaves, cells, drift, shake=rng.uniform(0.0, 0.6), grain=rng.uniform(1.0, 5.0))
    return camera, base


def _weights(coords: np.ndarray, cell: float, n: int) -> np.ndarray:
    """(len(coords), n): how much each lattice line counts at each coordinate (smoothstep, wrapping)."""
    g = coords / cell
    i = np.floor(g).astype(int)
    f = g - i
    s = f * f * (3 - 2 * f)
    w = np.zeros((len(coords), n))
    rows = np.arange(len(coords))
    w[rows, i % n] += 1 - s
    w[rows, (i + 1) % n] += s
    return w


def _backdrop(camera: Camera, offset: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float64: value noise; the blend is separable, so each octave is Wy @ lattice @ Wx^T."""
    # Content moves by +offset on screen, so the pixel (x, y) shows the world at (x - ox, y - oy).
    x = np.arange(width) + 0.5 - offset[0] + 1000.0
    y = np.arange(height) + 0.5 - offset[1] + 1000.0
    image = np.zeros((height, width, 3), dtype=np.float32)
    for lattice, cell in zip(camera.lattice, camera.cells, strict=True):
        n = lattice.shape[0]
        wy, wx = _weights(y, cell, n), _weights(x, cell, n)
        image += np.einsum("yi,ijc,xj->yxc", wy, lattice, wx, optimize=True)
    return image


# -- the object -----------------------------------------------------------------------------------


def _make_look(rng: np.random.Generator, backdrop_colour: np.ndarray) -> Look:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    elongation = rng.uniform(2.0, 5.0)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    body = np.clip(backdrop_colour + direction * rng.uniform(12.0, 50.0), 0, 255)
    other = rng.normal(size=3)
    other /= np.linalg.norm(other)
    stripe = np.clip(body + other * rng.uniform(20.0, 50.0), 0, 255)
    return Look(
        shape=shape,
        elongation=elongation,
        stripe_period=rng.uniform(0.25, 0.7),
        stripe_angle=rng.uniform(0.0, math.pi),
        stripe_phase=rng.uniform(0.0, 1.0),
        body=body,
        stripe=stripe,
    )


def _inside(look: Look, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether object coordinates (u along the long axis, half-length 1) are inside the shape."""
    w = 1.0 / look.elongation  # half-width
    if look.shape == "ellipse":
        return u * u + (v / w) ** 2 <= 1.0
    if look.shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= w)
    if look.shape == "rhombus":
        return np.abs(u) + np.abs(v) / w <= 1.0
    # stadium: a bar with round ends
    core = np.clip(u, -(1.0 - w), 1.0 - w)
    return (u - core) ** 2 + v * v <= w * w


def _draw_object(image: np.ndarray, look: Look, pose: Pose) -> None:
    """Paint the object at `pose` into `image` (H, W, 3) in place, supersampled."""
    height, width = image.shape[:2]
    reach = pose.half_length + 2
    x0, x1 = max(0, int(pose.x - reach)), min(width, int(pose.x + reach) + 1)
    y0, y1 = max(0, int(pose.y - reach)), min(height, int(pose.y + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    k = SUPERSAMPLE
    sub = (np.arange(k) + 0.5) / k
    xs = (np.arange(x0, x1)[:, None] + sub[None, :]).reshape(-1)  # (Wb * k,)
    ys = (np.arange(y0, y1)[:, None] + sub[None, :]).reshape(-1)
    X, Y = np.meshgrid((xs - pose.x).astype(np.float32), (ys - pose.y).astype(np.float32))
    c, s = math.cos(pose.angle), math.sin(pose.angle)
    # Inverse of the clockwise-on-screen rotation, then the scale: object coordinates.
    u = (c * X + s * Y) / pose.half_length
    v = (-s * X + c * Y) / pose.half_length
    inside = _inside(look, u, v)  # (Hb * k, Wb * k) bool
    ca, sa = math.cos(look.stripe_angle), math.sin(look.stripe_angle)
    phase = (ca * u + sa * v) / look.stripe_period + look.stripe_phase
    striped = inside & ((phase - np.floor(phase)) < 0.5)
    hb, wb = y1 - y0, x1 - x0
    # Fractions of each pixel's samples that fall on the object and on its stripes: (Hb, Wb, 1).
    cover = inside.reshape(hb, k, wb, k).mean(axis=(1, 3), dtype=np.float32)[..., None]
    stripes = striped.reshape(hb, k, wb, k).mean(axis=(1, 3), dtype=np.float32)[..., None]
    region = image[y0:y1, x0:x1]
    region *= 1 - cover
    region += (cover - stripes) * look.body + stripes * look.stripe


# -- motion ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    label: str
    seconds: float
    speed: float  # pixels per second (slides)
    heading: float  # radians off the slide's direction
    growth: float  # log scale per second (zooms), positive
    spin: float  # radians per second (turns), positive


def _draw_motion(rng: np.random.Generator, label: str, seconds: float, short: int) -> Motion:
    return Motion(
        label=label,
        seconds=seconds,
        speed=rng.uniform(0.2, 0.5) * short,
        heading=math.radians(rng.uniform(-8.0, 8.0)),
        growth=math.log(rng.uniform(1.2, 2.5)),
        spin=math.radians(rng.uniform(50.0, 150.0)),
    )


def _step(pose: Pose, motion: Motion, dt: float) -> Pose:
    label = motion.label
    if label in SLIDES:
        dx, dy = SLIDES[label]
        c, s = math.cos(motion.heading), math.sin(motion.heading)
        vx, vy = c * dx - s * dy, s * dx + c * dy
        return Pose(pose.x + vx * motion.speed * dt, pose.y + vy * motion.speed * dt, pose.half_length, pose.angle)
    if label in ("zoom_in", "zoom_out"):
        sign = 1.0 if label == "zoom_in" else -1.0
        return Pose(pose.x, pose.y, pose.half_length * math.exp(sign * motion.growth * dt), pose.angle)
    if label in ("rotate_cw", "rotate_ccw"):
        sign = 1.0 if label == "rotate_cw" else -1.0
        return Pose(pose.x, pose.y, pose.half_length, pose.angle + sign * motion.spin * dt)
    raise ValueError(f"unknown motion {label!r}; known: {', '.join(CLASSES)}")


def render(rng: np.random.Generator, motions: list[Motion], start: Pose, fps: int, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8: one object following `motions` one after another from `start`."""
    height, width = size
    camera, backdrop_colour = _make_camera(rng, min(size))
    look = _make_look(rng, backdrop_colour)
    ends = np.cumsum([m.seconds for m in motions])
    count = int(round(ends[-1] * fps))
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    pose, dt = start, 1.0 / fps
    for i in range(count):
        t = i / fps
        jitter = rng.normal(0.0, camera.shake, size=2)
        offset = camera.drift * t + jitter
        image = _backdrop(camera, offset, height, width)
        seen = Pose(pose.x + jitter[0], pose.y + jitter[1], pose.half_length, pose.angle)
        _draw_object(image, look, seen)
        image += rng.normal(0.0, camera.grain, size=image.shape).astype(np.float32)
        frames[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        motion = motions[min(int(np.searchsorted(ends, t + 0.5 * dt, side="right")), len(motions) - 1)]
        pose = _step(pose, motion, dt)
    return frames


def make_clip(label: str, seed: int, seconds: float = 2.0) -> Clip:
    """One clip of `label`; the object passes near the picture's centre at mid-clip."""
    if label not in CLASSES:
        raise ValueError(f"unknown motion {label!r}; known: {', '.join(CLASSES)}")
    rng = np.random.default_rng([seed, 3, CLASSES.index(label)])
    fps = int(FRAME_RATES[int(rng.integers(len(FRAME_RATES)))])
    height, width = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
    short = min(height, width)
    motion = _draw_motion(rng, label, seconds, short)
    middle = Pose(
        width / 2 + rng.uniform(-0.12, 0.12) * short,
        height / 2 + rng.uniform(-0.12, 0.12) * short,
        rng.uniform(0.2, 0.38) * short,
        rng.uniform(0.0, 2 * math.pi),
    )
    # Run the motion backwards for half the clip to find where it starts.
    backwards = Motion(**{**motion.__dict__, "label": OPPOSITE[label]})
    start = middle
    for _ in range(int(round(seconds * fps / 2))):
        start = _step(start, backwards, 1.0 / fps)
    return Clip(render(rng, [motion], start, fps, (height, width)), fps, label)


OPPOSITE = {
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "zoom_in": "zoom_out",
    "zoom_out": "zoom_in",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
}


def make_sequence(seed: int, fps: int = 15, size: tuple[int, int] = (96, 176)) -> tuple[Clip, list[tuple[str, float]]]:
    """25 s of one object that grows, slides right, turns counterclockwise and shrinks, without cuts.

    Returns the clip and the (label, start second) of each segment. The pace is slow (zooms of
    1.2x per second, a slide of a fifth of the short side per second), as a long shot's is.
    """
    rng = np.random.default_rng([seed, 33])
    short = min(size)
    plan = [("zoom_in", 7.0), ("move_right", 5.0), ("rotate_ccw", 6.5), ("zoom_out", 6.5)]
    motions = []
    for label, seconds in plan:
        m = _draw_motion(rng, label, seconds, short)
        motions.append(
            Motion(label, seconds, 0.19 * short, m.heading * 0.5, math.log(1.18), math.radians(rng.uniform(50.0, 90.0)))
        )
    start = Pose(0.24 * size[1], size[0] / 2, 0.11 * short, rng.uniform(0.0, 2 * math.pi))
    frames = render(rng, motions, start, fps, size)
    starts = np.concatenate([[0.0], np.cumsum([s for _, s in plan])[:-1]])
    return Clip(frames, fps, "sequence"), [(label, float(t)) for (label, _), t in zip(plan, starts, strict=True)]


def write_clip(path: str | Path, clip: Clip, *, crf: int = 26) -> Path:
    """H.264 MP4 at the clip's frame rate."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(clip.fps))
        stream.height, stream.width = clip.frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"preset": "medium", "crf": str(crf)}
        for i, image in enumerate(clip.frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path
