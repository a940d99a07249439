"""Timeline benchmark: memory against video length, and the real-time factor of three models.

    python benchmarks/timeline.py [--cache DIR] [--quick] [--threads 0 1] [--cases small,x3d_xs,slow_r50]
                                  [--json OUT]

Each measurement is a fresh process running a whole timeline (``videozoo.jobs.timeline``: decode,
views, batched forward, segments, the files); its peak resident memory is read from ``wait4`` and
its real-time factor is video seconds / the run's own seconds (decoding and scoring, after the model
is built). Videos are synthetic motion scenes (``videozoo.data.synth``), encoded once into
``--cache``:

- 112x112 at 15 fps, 30 s and 10 min, for the small motion model (``motion_tiny`` where the tree
  has it, else x3d_xs): a 10-minute video should peak within 1.3x (+100 MB) of a 30-second one.
- 640x360 at 30 fps, 30 s, for x3d_xs and slow_r50 (random weights: speed does not depend on them).

The machine's CPU and its load average before and after each run are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import measured
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("move_left", "zoom_in", "rotate_cw", "move_down", "move_right", "zoom_out", "rotate_ccw", "move_up")

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from videozoo.jobs.timeline import TimelineRun, make_engine
from videozoo.engine.optimize import keep_freed_memory
keep_freed_memory()
video, model, weights, out = sys.argv[1:5]
engine = make_engine(model, weights=None if weights == "none" else weights)
built = time.perf_counter() - t0
run = TimelineRun(video, engine=engine)
for _ in run:
    pass
result = run.result()
result.save(out)
print(json.dumps({"duration": result.duration, "windows": len(result.windows), "segments": len(result.segments),
                  "run_seconds": run.seconds, "build_seconds": built, "peak_frames_held": run.peak_frames_held,
                  "batch_size": engine.batch_size, "precision": engine.precision.name,
                  "total_seconds": time.perf_counter() - t0}))
"""


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def synth_video(path: Path, seconds: float, fps: int, size: tuple[int, int], *, upscale: int = 1) -> Path:
    """Motion scenes of 4 s each, cycling through the classes; rendered at size / upscale."""
    if path.exists():
        return path
    import av

    from videozoo.data.synth import render_video

    h, w = size
    n = int(round(4 * fps))
    total = int(round(seconds * fps))
    tmp = path.with_name(path.stem + ".tmp.mp4")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        written, i = 0, 0
        while written < total:
            frames = render_video(CLASSES[i % len(CLASSES)], i, size=(h // upscale, w // upscale), num_frames=n).frames
            if upscale > 1:
                frames = np.repeat(np.repeat(frames, upscale, axis=1), upscale, axis=2)
            for f in frames[: total - written]:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                vf.pts = written
                vf.time_base = Fraction(1, fps)
                out.mux(stream.encode(vf))
                written += 1
            i += 1
        out.mux(stream.encode())
    os.replace(tmp, path)
    return path


def measure(video: Path, model: str, weights: str, threads: int | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        # From a small launcher: a child forked from this process would count its pages (measured.py).
        m = measured.run_measured([sys.executable, "-c", CHILD, str(video), model, weights, out], env)
    if m["rc"] != 0:
        raise RuntimeError(f"{model} on {video}: exit {m['rc']}\n{m['stderr'][-2000:]}")
    info = json.loads(m["stdout"].strip().splitlines()[-1])
    info.update(
        model=model,
        video=video.name,
        threads=threads or "default",
        peak_rss_mb=round(m["rss_mb"], 1),
        process_seconds=round(m["wall"], 2),
        cpu_seconds=round(m["cpu_s"], 2),
        realtime_factor=round(info["duration"] / info["run_seconds"], 2),
        load_before=round(load0, 2),
        load_after=round(os.getloadavg()[0], 2),
    )
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "videozoo-timeline-bench"))
    ap.add_argument("--quick", action="store_true", help="a 2-minute long video instead of 10 minutes")
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[0, 1],
        help="OMP_NUM_THREADS of the runs, one pass each (0: torch's default, one per core)",
    )
    ap.add_argument(
        "--cases",
        default="small,x3d_xs,slow_r50",
        help="comma-separated: small (the 30 s and long 112x112 runs), x3d_xs, slow_r50 (640x360)",
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from videozoo.models.registry import list_models

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    small = "motion_tiny" if "motion_tiny" in list_models() else "x3d_xs"
    small_weights = "default" if small == "motion_tiny" else "none"
    long_s = 120 if args.quick else 600
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); load average {os.getloadavg()}", flush=True)
    short = synth_video(cache / "motion_112_30s.mp4", 30, 15, (112, 112))
    long = synth_video(cache / f"motion_112_{long_s}s.mp4", long_s, 15, (112, 112))
    wide = synth_video(cache / "motion_640x360_30s.mp4", 30, 30, (360, 640), upscale=2)
    # (the videos are made even when a case is skipped, so a later run finds them cached)
    rows = []
    ok = True
    for threads in args.threads:
        group = []
        cases = set(args.cases.split(","))
        plan = [(short, small, small_weights), (long, small, small_weights)] if "small" in cases else []
        plan += [(wide, m, "none") for m in ("x3d_xs", "slow_r50") if m in cases]
        for video, model, weights in plan:
            r = measure(video, model, weights, threads or None)
            group.append(r)
            print(
                f"{r['model']:12s} {r['video']:26s} threads {str(r['threads']):7s} {r['duration']:6.1f} s video "
                f"{r['windows']:5d} windows  run {r['run_seconds']:7.2f} s ({r['realtime_factor']:6.2f}x real time)  "
                f"cpu {r['cpu_seconds']:7.2f} s  peak RSS {r['peak_rss_mb']:7.1f} MB  frames held <= "
                f"{r['peak_frames_held']}  load {r['load_before']:.1f} -> {r['load_after']:.1f}",
                flush=True,
            )
        if "small" in cases:
            a, b = group[0]["peak_rss_mb"], group[1]["peak_rss_mb"]
            limit = max(1.3 * a, a + 100)
            ok = ok and b <= limit
            print(
                f"memory: {long_s} s video peaks at {b:.1f} MB vs {a:.1f} MB for 30 s ({b / a:.2f}x; limit "
                f"{limit:.1f} MB): {'OK' if b <= limit else 'OVER'}",
                flush=True,
            )
        rows += group
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
