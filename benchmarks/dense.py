"""Dense features benchmark: memory against video length, throughput, and a whole-video reference.

    python benchmarks/dense.py [--cache DIR] [--quick] [--json OUT]

Each measurement is a fresh process (peak resident memory read with ``wait4``, see measured.py):

- ``dense``: ``videozoo.jobs.dense.dense_features`` (the video read once, in order, holding only
  the frames of unfinished windows) with the small motion model, 8-frame windows every 4 frames,
  on 112x112 synthetic motion videos at 15 fps of 30 s and 10 min (2 min with ``--quick``). The
  long video should peak within 1.3x (+100 MB) of the short one.
- ``whole``: what video_features does, for comparison: every frame of the video decoded into one
  array first, then the same windows through the same engine.

Throughput is windows per second of the run (decoding included, model building excluded) and the
videos per hour that gives for the video's length. The CPU and the load average are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import measured
from timeline import cpu_name, synth_video

ROOT = Path(__file__).resolve().parents[1]
CLIP_FRAMES, STRIDE = 8, 4

CHILD = r"""
import json, sys, time
import numpy as np
import torch
from videozoo.engine import Engine
from videozoo.engine.optimize import keep_freed_memory
from videozoo.jobs.dense import DensePlan, dense_features
keep_freed_memory()
mode, video, model, weights, n, s = sys.argv[1:7]
n, s = int(n), int(s)
engine = Engine.build(model, weights=weights, precision="fp32")
plan = DensePlan(n, s, last="drop")
t0 = time.perf_counter()
if mode == "dense":
    result = dense_features(engine, video, plan)
    windows, held = len(result.features), result.peak_frames_held
else:
    from videozoo.io import open_video
    with open_video(video) as v:
        frames = torch.stack([f.rgb() for f in v.frames()], dim=1)  # (C, F, H, W): the whole video
    held = frames.shape[1]
    rows = []
    batch = max(1, engine.batch_size * engine.input.num_frames // n)
    ranges = plan.ranges(held)
    for i in range(0, len(ranges), batch):
        views = torch.cat([engine.transform(frames[:, a:b], presampled=True) for a, b in ranges[i : i + batch]])
        rows.append(engine.forward(views, "features").numpy())
    windows = sum(len(r) for r in rows)
print(json.dumps({"run_seconds": time.perf_counter() - t0, "windows": windows, "frames_held": held}))
"""


def measure(mode: str, video: Path, seconds: float, model: str, weights: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load0 = os.getloadavg()[0]
    m = measured.run_measured(
        [sys.executable, "-c", CHILD, mode, str(video), model, weights, str(CLIP_FRAMES), str(STRIDE)], env
    )
    if m["rc"] != 0:
        raise RuntimeError(f"{mode} on {video}: exit {m['rc']}\n{m['stderr'][-2000:]}")
    info = json.loads(m["stdout"].strip().splitlines()[-1])
    info.update(
        mode=mode,
        video=video.name,
        video_seconds=seconds,
        peak_rss_mb=round(m["rss_mb"], 1),
        windows_per_second=round(info["windows"] / info["run_seconds"], 1),
        videos_per_hour=round(3600 / info["run_seconds"], 1),
        load_before=round(load0, 2),
        load_after=round(os.getloadavg()[0], 2),
    )
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "videozoo-timeline-bench"))
    ap.add_argument("--quick", action="store_true", help="a 2-minute long video instead of 10 minutes")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    long_s = 120 if args.quick else 600
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); load average {os.getloadavg()}", flush=True)
    videos = [
        (synth_video(cache / "motion_112_30s.mp4", 30, 15, (112, 112)), 30.0),
        (synth_video(cache / f"motion_112_{long_s}s.mp4", long_s, 15, (112, 112)), float(long_s)),
    ]
    rows = []
    for mode in ("dense", "whole"):
        for video, seconds in videos:
            r = measure(mode, video, seconds, "motion_tiny", "default")
            rows.append(r)
            print(
                f"{mode:6s} {r['video']:22s} {seconds:6.0f} s video {r['windows']:6d} windows  run "
                f"{r['run_seconds']:7.2f} s  {r['windows_per_second']:7.1f} windows/s  "
                f"{r['videos_per_hour']:8.1f} videos/h  peak RSS {r['peak_rss_mb']:7.1f} MB  frames held "
                f"{r['frames_held']}  load {r['load_before']:.1f} -> {r['load_after']:.1f}",
                flush=True,
            )
    a, b = rows[0]["peak_rss_mb"], rows[1]["peak_rss_mb"]
    limit = max(1.3 * a, a + 100)
    print(
        f"memory (dense): {long_s} s video peaks at {b:.1f} MB vs {a:.1f} MB for 30 s ({b / a:.2f}x; limit "
        f"{limit:.1f} MB): {'OK' if b <= limit else 'OVER'}",
        flush=True,
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1))
    return 0 if b <= limit else 1


if __name__ == "__main__":
    sys.exit(main())
