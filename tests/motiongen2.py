"""A second generator of the eight screen motions, built independently of videozoo.data.synth.

It shares nothing with the training generator but the meaning of the class names. Where synth
evaluates shapes and textures analytically at every pixel, on a torus, with motions given per frame
and opposite classes made by reversing time, this one:

- paints each object once into a supersampled RGBA sprite (irregular blobs, rounded rectangles,
  triangles, L shapes, block glyphs, crescents; filled with Voronoi cells, polka dots, value noise,
  colour bands, hard checks, or a flat colour with an outline and a spot) and draws it into every
  frame by inverse affine mapping with bilinear sampling;
- films a painted backdrop (a two-colour gradient under soft rectangles and discs, optionally fine
  value noise and a box blur) through a camera that pans slowly and shakes;
- gives speeds per second, renders at 10 to 30 fps and at several frame sizes, square or not;
- zooms by a linear change of scale, and builds every class forwards (never by reversal);
- adds Gaussian grain, flicker, vignetting and an optional blur, and encodes with MPEG-4 Part 2 or
  with H.264 at a lower quality than the training set's.

Objects pass the centre of the picture at mid-video, so the centred clip of a video shows them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CLASSES = ("move_left", "move_right", "move_up", "move_down", "zoom_in", "zoom_out", "rotate_cw", "rotate_ccw")
FRAME_RATES = (10, 12, 20, 24, 25, 30)
FRAME_SIZES = ((96, 128), (120, 160), (112, 112), (128, 96), (90, 160), (144, 144))  # (H, W)
SPRITE = 96  # sprite side in pixels (before 3x supersampling)


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: int
    label: str


# -- sprites --------------------------------------------------------------------------------------


def _sprite_mask(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """(n, n) float32 coverage of a shape in [-1, 1]^2, supersampled 3x3 and box-filtered."""
    s = 3 * n
    g = (np.arange(s) + 0.5) / s * 2 - 1
    x, y = np.meshgrid(g, g)
    r, a = np.hypot(x, y), np.arctan2(y, x)
    if kind == "blob":
        edge = 0.75 + sum(rng.uniform(0.04, 0.12) * np.cos(k * a + rng.uniform(0, 6.3)) for k in (2, 3, 5))
        inside = r < edge
    elif kind == "rounded_rect":
        hx, hy, c = rng.uniform(0.6, 0.95), rng.uniform(0.35, 0.7), rng.uniform(0.1, 0.3)
        qx, qy = np.maximum(np.abs(x) - (hx - c), 0), np.maximum(np.abs(y) - (hy - c), 0)
        inside = np.hypot(qx, qy) < c
    elif kind == "triangle":
        pts = [(math.cos(t), math.sin(t)) for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        pts[0] = (pts[0][0] + rng.uniform(-0.3, 0.3), pts[0][1])  # not equilateral
        inside = np.ones_like(x, dtype=bool)
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=False):
            inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) > 0
        inside = inside if inside.mean() > 0.05 else ~inside
    elif kind == "lshape":
        w = rng.uniform(0.3, 0.5)
        inside = ((np.abs(x) < 0.85) & (y > 0.85 - 2 * w) & (y < 0.85)) | (
            (x > -0.85) & (x < -0.85 + 2 * w) & (np.abs(y) < 0.85)
        )
    elif kind == "glyph":
        cells = rng.random((5, 5)) < 0.55
        cells[2, 2] = True
        ix = np.clip(((x + 1) / 2 * 5).astype(int), 0, 4)
        iy = np.clip(((y + 1) / 2 * 5).astype(int), 0, 4)
        inside = cells[iy, ix] & (np.abs(x) < 0.95) & (np.abs(y) < 0.95)
    elif kind == "crescent":
        d = rng.uniform(0.35, 0.6)
        inside = (r < 0.9) & (np.hypot(x - d, y - 0.1) > 0.75)
    else:
        raise ValueError(kind)
    return inside.reshape(n, 3, n, 3).mean(axis=(1, 3)).astype(np.float32)


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` saturated colours of random hue, (count, 3) in 0-255."""
    hue = (rng.uniform(0, 1) + np.arange(count) / count + rng.uniform(-0.08, 0.08, count)) % 1.0
    sat = rng.uniform(0.5, 1.0, count)
    val = rng.uniform(0.45, 1.0, count)
    k = (np.array([5, 3, 1])[None] + hue[:, None] * 6) % 6
    rgb = val[:, None] - val[:, None] * sat[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (rgb * 255).astype(np.float32)


def _sprite_fill(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """(n, n, 3) float32 colours of a texture."""
    colours = _palette(rng, 4)
    g = (np.arange(n) + 0.5) / n * 2 - 1
    x, y = np.meshgrid(g, g)
    if kind == "voronoi":
        seeds = rng.uniform(-1, 1, size=(9, 2))
        nearest = np.argmin((x[..., None] - seeds[:, 0]) ** 2 + (y[..., None] - seeds[:, 1]) ** 2, axis=-1)
        return colours[nearest % 4]
    if kind == "dots":
        f = rng.uniform(2.0, 3.5)
        spots = np.hypot((x * f) % 1 - 0.5, (y * f + 0.5 * np.floor(x * f)) % 1 - 0.5) < 0.3
        return np.where(spots[..., None], colours[0], colours[1])
    if kind == "value_noise":
        coarse = rng.random((6, 6))
        fine = _upsample(coarse, n)
        return colours[0] + fine[..., None] * (colours[1] - colours[0])
    if kind == "bands":
        count = int(rng.integers(3, 6))
        band = np.clip(((y + 1) / 2 * count).astype(int), 0, count - 1)
        return colours[band % 4]
    if kind == "checks":
        f = rng.uniform(1.5, 3.0)
        return np.where(((np.floor(x * f) + np.floor(y * f)) % 2 == 0)[..., None], colours[0], colours[2])
    if kind == "outlined":
        out = np.broadcast_to(colours[0], (n, n, 3)).copy()
        spot = np.hypot(x - 0.35, y + 0.2) < 0.25  # off centre, so that a turn shows
        out[spot] = colours[2]
        return out
    raise ValueError(kind)


def _upsample(coarse: np.ndarray, n: int) -> np.ndarray:
    """Bilinear upsampling of a small (h, w) grid to (n, n)."""
    h, w = coarse.shape
    ys = np.linspace(0, h - 1, n)
    xs = np.linspace(0, w - 1, n)
    y0 = np.minimum(ys.astype(int), h - 2)
    x0 = np.minimum(xs.astype(int), w - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    c = coarse
    return (c[y0][:, x0] * (1 - fx) + c[y0][:, x0 + 1] * fx) * (1 - fy) + (
        c[y0 + 1][:, x0] * (1 - fx) + c[y0 + 1][:, x0 + 1] * fx
    ) * fy


def make_sprite(rng: np.random.Generator) -> np.ndarray:
    """(S, S, 4) float32 RGBA sprite; colour 0-255, alpha 0-1."""
    shape = ("blob", "rounded_rect", "triangle", "lshape", "glyph", "crescent")[int(rng.integers(6))]
    fill = ("voronoi", "dots", "value_noise", "bands", "checks", "outlined")[int(rng.integers(6))]
    alpha = _sprite_mask(rng, shape, SPRITE)
    colour = _sprite_fill(rng, fill, SPRITE)
    if fill == "outlined":
        # A dark rim where the coverage falls off.
        rim = (alpha > 0.5) & (_erode(alpha) < 0.5)
        colour = np.where(rim[..., None], colour * 0.3, colour)
    return np.concatenate([colour, alpha[..., None]], axis=-1).astype(np.float32)


def _erode(alpha: np.ndarray, k: int = 4) -> np.ndarray:
    out = alpha.copy()
    for dy, dx in ((k, 0), (-k, 0), (0, k), (0, -k)):
        out = np.minimum(out, np.roll(alpha, (dy, dx), axis=(0, 1)))
    return out


# -- sampling -------------------------------------------------------------------------------------


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample (h, w, C) `image` at float pixel coordinates (x right, y down); zero outside."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[..., None].astype(np.float32), (y - y0)[..., None].astype(np.float32)
    out = 0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            valid = ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))[..., None]
            out = out + np.where(valid, image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0) * (wx * wy)
    return out


# -- backdrop -------------------------------------------------------------------------------------


def make_backdrop(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) float32 painted scene, larger than the frame the camera films."""
    c0, c1 = _palette(rng, 2) * rng.uniform(0.5, 0.9)
    t = np.linspace(0, 1, height)[:, None, None]
    canvas = np.broadcast_to(c0 + t * (c1 - c0), (height, width, 3)).astype(np.float32).copy()
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(3, 12))):
        colour = _palette(rng, 1)[0] * rng.uniform(0.4, 1.0)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        sx, sy = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        if rng.random() < 0.5:
            inside = (np.abs(xx - cx) < sx) & (np.abs(yy - cy) < sy)
        else:
            inside = ((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2 < 1
        opacity = rng.uniform(0.15, 0.6)
        canvas[inside] = (1 - opacity) * canvas[inside] + opacity * colour
    if rng.random() < 0.5:
        grain = _upsample(rng.random((height // 3, width // 3)), max(height, width))[:height, :width]
        canvas += (grain[..., None] - 0.5) * rng.uniform(10, 40)
    for _ in range(int(rng.integers(0, 3))):
        canvas = _box_blur(canvas)
    return canvas


def _box_blur(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9


# -- a clip ---------------------------------------------------------------------------------------


def make_clip(label: str, seed: int) -> Clip:
    """One clip of `label` from `seed` (any int), its frames and frame rate."""
    if label not in CLASSES:
        raise ValueError(label)
    rng = np.random.default_rng([seed, CLASSES.index(label), 2024])
    fps = int(rng.choice(FRAME_RATES))
    height, width = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
    short = min(height, width)
    duration = rng.uniform(1.6, 2.4)
    T = max(int(round(duration * fps)), 8)
    times = np.arange(T) / fps
    t_mid = times[-1] / 2

    margin = 0.25 * short
    backdrop = make_backdrop(rng, int(height + 2 * margin), int(width + 2 * margin))
    pan_direction = rng.uniform(0, 2 * math.pi)
    pan = rng.uniform(0, 0.06) * short * np.array([math.cos(pan_direction), math.sin(pan_direction)])
    shake = rng.normal(0, rng.uniform(0, 0.6), size=(T, 2))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5

    frames = np.empty((T, height, width, 3), dtype=np.float32)
    cam = margin + pan[None] * (times - t_mid)[:, None] + shake  # (T, 2) camera offset in the backdrop
    for i in range(T):
        frames[i] = bilinear(backdrop, xs + cam[i, 0] - 0.5, ys + cam[i, 1] - 0.5)

    count = 1 if rng.random() < 0.7 else 2
    mean_bg = backdrop.reshape(-1, 3).mean(0)
    for k in range(count):
        for _ in range(50):
            sprite = make_sprite(rng)
            covered = sprite[..., 3] > 0.5
            if np.linalg.norm(sprite[..., :3][covered].mean(0) - mean_bg) > 60:
                break
        _draw_moving(frames, sprite, label, rng, times, t_mid, width, height, short, shake, k, count)

    gain = 1 + rng.uniform(-0.15, 0.15) * (times - t_mid) / max(t_mid, 1e-6) + rng.normal(0, rng.uniform(0, 0.03), T)
    frames *= gain[:, None, None, None].astype(np.float32)
    vignette = 1 - rng.uniform(0, 0.35) * (((xs - width / 2) / width) ** 2 + ((ys - height / 2) / height) ** 2) * 2
    frames *= vignette[None, ..., None].astype(np.float32)
    if rng.random() < 0.3:
        frames = np.stack([_box_blur(f) for f in frames])
    frames += rng.normal(0, rng.uniform(0, 6), size=frames.shape).astype(np.float32)
    return Clip(np.clip(np.round(frames), 0, 255).astype(np.uint8), fps, label)


def _draw_moving(frames, sprite, label, rng, times, t_mid, width, height, short, shake, k, count) -> None:
    """Composite `sprite` into `frames` (in place), moving as `label` says, passing the centre at mid-video."""
    size = rng.uniform(0.1, 0.28) * short / (1 if count == 1 else 1.3)  # half the sprite's side, in pixels
    spread = 0.12 if count == 1 else 0.25
    mid = np.array([width / 2, height / 2]) + rng.uniform(-spread, spread, 2) * short
    theta0 = rng.uniform(0, 2 * math.pi)
    dt = times - t_mid
    scale = np.full_like(times, size)
    theta = np.full_like(times, theta0)
    pos = np.repeat(mid[None], len(times), axis=0) + rng.normal(0, 0.01 * short, 2)
    if label.startswith("move_"):
        speed = rng.uniform(0.16, 0.6) * short
        heading = math.radians(rng.uniform(-10, 10))
        base = {"move_left": math.pi, "move_right": 0.0, "move_up": -math.pi / 2, "move_down": math.pi / 2}[label]
        direction = np.array([math.cos(base + heading), math.sin(base + heading)])
        pos = pos + speed * dt[:, None] * direction
    elif label.startswith("zoom_"):
        size = rng.uniform(0.12, 0.22) * short
        rate = rng.uniform(0.35, 0.8) * (1 if label == "zoom_in" else -1)  # relative change of scale per second
        scale = size * np.maximum(1 + rate * dt, 0.25)
    else:
        omega = math.radians(rng.uniform(50, 150)) * (1 if label == "rotate_cw" else -1)
        theta = theta0 + omega * dt
    pos = pos - shake  # the camera shakes, so everything in the picture moves the other way
    n = sprite.shape[0]
    ys, xs = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]].astype(np.float64) + 0.5
    for i in range(len(times)):
        # Frame pixel -> sprite pixel: undo the translation, the turn (clockwise on screen for a
        # growing angle, y pointing down) and the scale.
        dx, dy = xs - pos[i, 0], ys - pos[i, 1]
        c, s = math.cos(theta[i]), math.sin(theta[i])
        u = (c * dx + s * dy) / scale[i]
        v = (-s * dx + c * dy) / scale[i]
        sample = bilinear(sprite, (u + 1) / 2 * n - 0.5, (v + 1) / 2 * n - 0.5)
        alpha = sample[..., 3:4]
        frames[i] = frames[i] * (1 - alpha) + sample[..., :3] * alpha


def write_clip(path: str | Path, clip: Clip, *, seed: int) -> Path:
    """Encode with MPEG-4 Part 2 or low-quality H.264 (picked from `seed`)."""
    path = Path(path)
    rng = np.random.default_rng([seed, 77])
    mpeg4 = rng.random() < 0.5
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4" if mpeg4 else "libx264", rate=Fraction(clip.fps))
        stream.height, stream.width = clip.frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if mpeg4:
            stream.codec_context.qscale = int(rng.integers(3, 7))
            stream.options = {"qscale": str(stream.codec_context.qscale)}
        else:
            stream.options = {"preset": "fast", "crf": str(int(rng.integers(24, 30)))}
        for i, image in enumerate(clip.frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path
