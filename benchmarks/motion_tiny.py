"""Throughput of motion_tiny over a long video: the work of a timeline (windows at half-clip stride).

    python benchmarks/motion_tiny.py [--minutes 10] [--size 112] [--fps 15] [--threads 2] [--video PATH]

Writes (or takes) a long video made of segments of 4 to 12 s, each showing one of the eight motions
(`videozoo.data.synth`, wide variety), then times in one process: one sequential decode of every
frame; for every window of one clip's span (16 frames at 15 fps) at a stride of half that span, the
model's eval transform (8 frames, short side 64, centre crop); and the model's scores, 64 windows
per forward pass. Prints the seconds of each part and the real-time factor (video duration over
processing time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from fractions import Fraction

import av
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from videozoo.data.synth import DEFAULT_CLASSES, render_video, video_rng  # noqa: E402
from videozoo.engine import Engine  # noqa: E402
from videozoo.io import open_video  # noqa: E402


def write_long_video(path: str, *, minutes: float, size: int, fps: int, seed: int = 0) -> list[tuple[float, str]]:
    """Encode a multi-segment video segment by segment; returns (start second, class) per segment."""
    rng = np.random.default_rng(seed)
    total = int(round(minutes * 60 * fps))
    segments = []
    with av.open(path, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        written = 0
        while written < total:
            count = min(int(rng.integers(4 * fps, 12 * fps)), total - written)
            if count < 2:
                count = total - written
            name = DEFAULT_CLASSES[int(rng.integers(len(DEFAULT_CLASSES)))]
            segments.append((written / fps, name))
            video = render_video(
                name, video_rng(seed, name, len(segments)), size=(size, size), num_frames=max(count, 2), variety="wide"
            )
            for image in video.frames[:count]:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = written
                out.mux(stream.encode(frame))
                written += 1
        out.mux(stream.encode())
    return segments


def run(path: str, *, batch: int) -> dict:
    t0 = time.perf_counter()
    engine = Engine.build("motion_tiny", weights="default", views="1x1")
    inp = engine.input
    transform = engine.transform
    t_model = time.perf_counter()
    with open_video(path) as video:
        whole = video.decode_all()  # (3, N, H, W) uint8 and the frames' timestamps
        duration, video_fps = float(video.duration), float(video.fps)
    t_decoded = time.perf_counter()
    span = inp.clip_seconds
    starts = np.arange(0.0, max(duration - span, 0.0) + 1e-9, span / 2)
    pts = whole.pts_sec.numpy()
    transform_s = model_s = 0.0
    labels = []
    for first in range(0, len(starts), batch):
        t = time.perf_counter()
        views = []
        for start in starts[first : first + batch]:
            lo, hi = np.searchsorted(pts, [start, start + span])
            views.append(transform(whole.frames[:, lo : max(hi, lo + 1)], video_fps=video_fps))
        x = torch.cat(views)  # (B, 3, 8, 64, 64)
        transform_s += time.perf_counter() - t
        t = time.perf_counter()
        labels += engine.forward(x).argmax(1).tolist()
        model_s += time.perf_counter() - t
    total = time.perf_counter() - t0
    return {
        "video_seconds": round(duration, 1),
        "windows": len(starts),
        "set_up_s": round(t_model - t0, 2),
        "decode_s": round(t_decoded - t_model, 2),
        "transform_s": round(transform_s, 2),
        "model_s": round(model_s, 2),
        "total_s": round(total, 2),
        "real_time_factor": round(duration / total, 1),
        "ms_per_window": round(1000 * (transform_s + model_s) / max(len(starts), 1), 2),
        "labels": labels,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", help="an existing video (default: write a synthetic one)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--batch", type=int, default=64, help="windows per forward pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.video
        segments = None
        if path is None:
            path = os.path.join(tmp, "long.mp4")
            t = time.perf_counter()
            segments = write_long_video(path, minutes=args.minutes, size=args.size, fps=args.fps)
            print(f"wrote {path}: {len(segments)} segments in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        result = run(path, batch=args.batch)
    if segments is not None:
        # Share of windows whose label is the segment's class at the window's centre.
        span = 16 / 15
        starts = [s for s, _ in segments]
        truth = [
            segments[int(np.searchsorted(starts, i * span / 2 + span / 2, side="right")) - 1][1]
            for i in range(result["windows"])
        ]
        right = sum(DEFAULT_CLASSES[p] == t for p, t in zip(result["labels"], truth, strict=False))
        result["window_accuracy"] = round(right / max(len(truth), 1), 3)
    del result["labels"]
    result["threads"] = args.threads
    print(json.dumps(result))
    return 0 if math.isfinite(result["real_time_factor"]) else 1


if __name__ == "__main__":
    sys.exit(main())
