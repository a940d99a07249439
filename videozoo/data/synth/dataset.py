"""Rendering by variety, encoding, and writing whole labelled datasets to disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np

from videozoo.data.synth.classic import render_classic
from videozoo.data.synth.scene import DEFAULT_CLASSES, MOTIONS, SynthVideo, video_rng
from videozoo.data.synth.wide import render_wide

_ENCODERS = {"h264": "libx264", "x264": "libx264", "libx264": "libx264"}

#: scene generators by name: "classic" (one object, one look) and "wide" (many looks, see synth.wide)
VARIETIES: dict[str, Callable[..., SynthVideo]] = {"classic": render_classic, "wide": render_wide}


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
    variety: str = "classic"


def render_video(
    class_name: str,
    rng: np.random.Generator | int,
    *,
    size: tuple[int, int] = (112, 112),
    num_frames: int = 32,
    clutter: float = 1.0,
    variety: str = "classic",
) -> SynthVideo:
    """Render one video of ``class_name`` (see :data:`MOTIONS`) from ``rng`` (or a seed).

    ``variety`` picks the scene generator (:data:`VARIETIES`). ``clutter`` scales the background's
    texture, its drift and the sensor noise: 0 gives a flat background and clean frames, with the
    same objects and motion as any other value.
    """
    if variety not in VARIETIES:
        raise ValueError(f"unknown variety {variety!r}; known: {', '.join(VARIETIES)}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    return VARIETIES[variety](
        class_name, rng, size=(int(size[0]), int(size[1])), num_frames=num_frames, clutter=clutter
    )


def render_sequence(
    classes: Sequence[str],
    *,
    seconds: float = 4.0,
    fps: float = 15,
    size: tuple[int, int] = (112, 112),
    variety: str = "wide",
    seed: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """One scene of each of ``classes``, back to back, ``seconds`` each: a video to cut into segments.

    Returns the (T, H, W, 3) uint8 frames and the true start time of every scene in seconds (the
    first is 0). Scene ``i`` is rendered from seed ``seed + i``.
    """
    n = int(round(seconds * fps))
    if n < 1:
        raise ValueError(f"a scene of {seconds} s at {fps} fps has no frame")
    scenes = [render_video(c, seed + i, size=size, num_frames=n, variety=variety).frames for i, c in enumerate(classes)]
    return np.concatenate(scenes), [i * n / fps for i in range(len(classes))]


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
    variety: str = "classic",
    workers: int = 1,
) -> DatasetInfo:
    """Render and encode a labelled dataset into ``out_dir``.

    Layout: ``<class>/<class>_0000.mp4`` per video (a folder per class), ``train.txt`` and
    ``val.txt`` with one ``<class>/<class>_0000.mp4 <class>`` line per video (paths relative to
    ``out_dir``), ``classes.txt`` (one name per line, label index = line number) and ``synth.json``
    (the arguments). In each class the last ``round(videos_per_class * val_fraction)`` videos are
    held out for validation. The same arguments give the same files, whatever ``workers`` (the
    number of processes rendering in parallel). ``clutter`` and ``variety`` are passed to
    :func:`render_video`.
    """
    classes = tuple(classes)
    unknown = [c for c in classes if c not in MOTIONS]
    if unknown:
        raise ValueError(f"unknown motion classes {unknown}; known: {sorted(MOTIONS)}")
    if len(set(classes)) != len(classes):
        raise ValueError("classes must not repeat")
    if variety not in VARIETIES:
        raise ValueError(f"unknown variety {variety!r}; known: {', '.join(VARIETIES)}")
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
        seed=seed,
        size=size,
        num_frames=num_frames,
        clutter=clutter,
        variety=variety,
        fps=fps,
        codec=codec,
        crf=crf,
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
        "variety": variety,
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
        variety=variety,
    )


def _render_and_write(job: tuple[str, int, Path], *, seed, size, num_frames, clutter, variety, fps, codec, crf) -> None:
    name, index, path = job
    rng = video_rng(seed, name, index)
    video = render_video(name, rng, size=size, num_frames=num_frames, clutter=clutter, variety=variety)
    write_video(path, video.frames, fps=fps, codec=codec, crf=crf)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))
