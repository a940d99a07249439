"""Dense features benchmark: memory against video length, throughput (one process and Ray), and a
whole-video reference.

    python benchmarks/dense.py [--cache DIR] [--quick] [--no-ray] [--json OUT]

Each measurement is a fresh process (peak resident memory read with ``wait4``, see measured.py), all
with the small motion model (``motion_tiny``, packaged weights), float32:

- ``length``: ``videozoo.jobs.dense.dense_features`` (the video read once, in order, holding only the
  frames of unfinished windows), 8-frame windows every 16 frames, on a 1-minute and a 1-hour video
  at 30 fps (64x64, the model's own crop, so that the hour costs minutes; the hour is the minute
  repeated, packets copied, not re-encoded; every frame is decoded, half of them converted to RGB). The hour must peak within 10% of the minute.
  ``--quick``: 10 minutes instead of the hour.
- ``memory``: the same job, 8-frame windows every 4 frames, on one 10-minute 112x112 video at 15 fps
  (2 minutes with ``--quick``), against ``whole``: what video_features does (every frame of the
  video decoded into one array first, then the same windows through the same engine).
- ``throughput``: 4 videos of 2 minutes (112x112, 15 fps, 8-frame windows every 4 frames) as one
  run: ``single`` (``extract_dense``, one process), ``ray`` (``videozoo.jobs.ray_run.extract_dense``
  on a local Ray with 2 engine actors, 4 logical CPUs declared so that 2 decoding tasks run beside
  them) and ``whole`` (the reference, video after video). Windows per second and videos per hour
  count the run from its first video to its last output (model loading included; starting the
  local Ray is not, and is printed on its own).

The CPU and the load average are printed with each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import measured
from timeline import cpu_name, synth_video

ROOT = Path(__file__).resolve().parents[1]
MODEL, WEIGHTS = "motion_tiny", "default"

CHILD = r"""
import json, sys, time
import numpy as np
import torch
from videozoo.engine.optimize import keep_freed_memory
keep_freed_memory()
mode, out, n, s, *videos = sys.argv[1:]
n, s = int(n), int(s)
model, weights = "motion_tiny", "default"
report = {}
if mode == "ray":
    import ray
    t = time.perf_counter()
    # 2 engine actors of one CPU each, and 2 CPUs for the decoding tasks beside them.
    ray.init(num_cpus=4, object_store_memory=1 << 30, include_dashboard=False, log_to_driver=False)
    report["ray_start_seconds"] = time.perf_counter() - t
t0 = time.perf_counter()
if mode in ("single", "ray"):
    from videozoo.jobs.dense import DenseConfig, extract_dense
    cfg = DenseConfig(model=model, out=out, clip_frames=n, stride=s, last="drop", videos=videos, weights=weights,
                      precision="fp32")
    if mode == "ray":
        from videozoo.jobs.ray_run import RayOptions, extract_dense as ray_dense
        summary = ray_dense(cfg, RayOptions(actors=2))
    else:
        summary = extract_dense(cfg)
    assert summary["failed"] == 0, summary
    report.update(windows=summary["windows"], frames_held=None)
    run = time.perf_counter() - t0
else:
    from videozoo.engine import Engine
    from videozoo.jobs.dense import DensePlan, dense_features
    engine = Engine.build(model, weights=weights, precision="fp32")
    plan = DensePlan(n, s, last="drop")
    windows, held = 0, 0
    for video in videos:
        if mode == "dense":
            result = dense_features(engine, video, plan)
            windows += len(result.features)
            held = max(held, result.peak_frames_held)
            continue
        # video_features' way: the whole video decoded into memory, then the windows.
        from videozoo.io import open_video
        with open_video(video) as v:
            frames = torch.stack([f.rgb() for f in v.frames()], dim=1)  # (C, F, H, W): the whole video
        held = max(held, frames.shape[1])
        batch = max(1, engine.batch_size * engine.input.num_frames // n)
        ranges = plan.ranges(frames.shape[1])
        for i in range(0, len(ranges), batch):
            views = torch.cat([engine.transform(frames[:, a:b], presampled=True) for a, b in ranges[i : i + batch]])
            windows += len(engine.forward(views, "features"))
        del frames
    report.update(windows=windows, frames_held=held)
    run = time.perf_counter() - t0
if mode == "ray":
    ray.shutdown()
report["run_seconds"] = run
print(json.dumps(report))
"""


def looped_video(src: Path, copies: int, path: Path) -> Path:
    """``copies`` copies of ``src`` back to back, its packets copied with shifted timestamps (no re-encoding)."""
    if path.exists():
        return path
    import av

    tmp = path.with_name(path.stem + ".tmp.mp4")
    with av.open(str(src)) as first:
        stream = first.streams.video[0]
        span = round(stream.frames / stream.average_rate / stream.time_base)  # one copy, in stream units
    with av.open(str(tmp), "w", format="mp4") as out:
        ostream = None
        for c in range(copies):
            with av.open(str(src)) as inp:
                istream = inp.streams.video[0]
                if ostream is None:
                    ostream = out.add_stream_from_template(istream)
                for packet in inp.demux(istream):
                    if packet.size == 0:
                        continue  # the demuxer's flush packet
                    packet.pts += c * span
                    packet.dts += c * span
                    packet.stream = ostream
                    out.mux(packet)
    os.replace(tmp, path)
    return path


def measure(mode: str, videos: list[Path], seconds: float, n: int, s: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="videozoo-dense-bench-") as out:
        m = measured.run_measured([sys.executable, "-c", CHILD, mode, out, str(n), str(s), *map(str, videos)], env)
    if m["rc"] != 0:
        raise RuntimeError(f"{mode} on {videos[0]}...: exit {m['rc']}\n{m['stderr'][-3000:]}")
    info = json.loads(m["stdout"].strip().splitlines()[-1])
    info.update(
        mode=mode,
        videos=len(videos),
        video=videos[0].name,
        video_seconds=seconds,
        clip_frames=n,
        stride=s,
        peak_rss_mb=round(m["rss_mb"], 1),
        windows_per_second=round(info["windows"] / info["run_seconds"], 1),
        videos_per_hour=round(3600 * len(videos) / info["run_seconds"], 1),
        load_before=round(load0, 2),
        load_after=round(os.getloadavg()[0], 2),
    )
    return info


def show(section: str, r: dict) -> None:
    ray = f"  (Ray started in {r['ray_start_seconds']:.1f} s)" if "ray_start_seconds" in r else ""
    held = f"  frames held {r['frames_held']}" if r.get("frames_held") is not None else ""
    print(
        f"{section:10s} {r['mode']:6s} {r['videos']} x {r['video']:24s} {r['video_seconds']:6.0f} s  "
        f"{r['windows']:6d} windows  run {r['run_seconds']:7.2f} s  {r['windows_per_second']:7.1f} windows/s  "
        f"{r['videos_per_hour']:8.1f} videos/h  peak RSS {r['peak_rss_mb']:7.1f} MB{held}  "
        f"load {r['load_before']:.1f} -> {r['load_after']:.1f}{ray}",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "videozoo-dense-bench"))
    ap.add_argument("--quick", action="store_true", help="10 minutes instead of the hour; 2 instead of 10 minutes")
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray run (no ray extra installed)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); load average {os.getloadavg()}", flush=True)
    rows: list[dict] = []
    ok = True

    # Memory against length: a minute and an hour at 30 fps.
    minute = synth_video(cache / "motion_64_30fps_60s.mp4", 60, 30, (64, 64))
    copies = 10 if args.quick else 60
    long = looped_video(minute, copies, cache / f"motion_64_30fps_{60 * copies}s.mp4")
    length = [measure("dense", [v], secs, 8, 16) for v, secs in ((minute, 60.0), (long, 60.0 * copies))]
    for r in length:
        r["section"] = "length"
        show("length", r)
    a, b = length[0]["peak_rss_mb"], length[1]["peak_rss_mb"]
    verdict = "OK" if b <= 1.10 * a else "OVER"
    ok &= verdict == "OK"
    print(
        f"memory (dense): {60 * copies} s video peaks at {b:.1f} MB vs {a:.1f} MB for 60 s ({b / a:.3f}x; limit 1.10x): {verdict}"
    )
    rows += length

    # Peak memory of a 10-minute video: the job against the whole video in memory.
    ten_s = 120 if args.quick else 600
    ten = synth_video(cache / f"motion_112_{ten_s}s.mp4", ten_s, 15, (112, 112))
    for mode in ("dense", "whole"):
        r = measure(mode, [ten], float(ten_s), 8, 4)
        r["section"] = "memory"
        show("memory", r)
        rows.append(r)

    # Throughput over a set of videos: one process, Ray with 2 actors, the reference.
    two = synth_video(cache / "motion_112_120s.mp4", 120, 15, (112, 112))
    subset = []
    for k in range(4):  # 4 names (outputs are per name), one file
        link = cache / f"set_{k}.mp4"
        if not link.exists():
            shutil.copyfile(two, link)
        subset.append(link)
    for mode in ("single", *(() if args.no_ray else ("ray",)), "whole"):
        r = measure(mode, subset, 120.0, 8, 4)
        r["section"] = "throughput"
        show("throughput", r)
        rows.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
