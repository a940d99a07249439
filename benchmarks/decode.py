"""Decoding benchmark for videozoo.io.

Times the 10 clips of a 10x3 evaluation of slow_r50 (64 frames at 30 fps =
2.133 s per clip, 10 uniformly spaced starts) taken in one pass with
``get_clips``, the same pass keeping only the 8 frames of each window that
slow_r50 8x8 uses (``select``), the clips taken one ``get_clip`` at a time,
and one full decode. Then compares peak memory of one 2-s clip from a long
video and from a 10-s one (each measured in a fresh process).

    python benchmarks/decode.py [--video PATH] [--long-minutes 5] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

CLIP_SEC = 64 / 30
KEEP = 8  # frames slow_r50 8x8 keeps of each 64-frame window


def eval_windows(duration: float, n: int = 10):
    starts = np.linspace(0.0, max(0.0, duration - CLIP_SEC), n)
    return [(float(s), float(s) + CLIP_SEC) for s in starts]


def best_of(fn, repeat: int):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def time_decoding(path: str, threads, repeat: int):
    import torch

    from videozoo.data.transforms import temporal_indices
    from videozoo.io import open_video

    rows = []
    with open_video(path, threads=threads) as v:
        windows = eval_windows(v.duration)

        def one_pass():
            v.stats.reset()
            clips = v.get_clips(windows)
            del clips
            return v.stats.frames_decoded, v.stats.seeks

        def keep8(i: int, pts: torch.Tensor) -> torch.Tensor:
            return temporal_indices(pts.numel(), KEEP)

        def one_pass_select():
            v.stats.reset()
            clips = v.get_clips(windows, select=keep8)
            del clips
            return v.stats.frames_decoded, v.stats.seeks

        def separate():
            v.stats.reset()
            # Keep the clips, as an evaluation does, so both variants pay
            # for the same output memory.
            clips = [v.get_clip(s, e) for s, e in windows]
            del clips
            return v.stats.frames_decoded, v.stats.seeks

        def full():
            v.stats.reset()
            v.decode_all()
            return v.stats.frames_decoded, v.stats.seeks

        for name, fn in [
            ("10 clips, get_clips (one pass)", one_pass),
            (f"10 clips, get_clips, select {KEEP} of 64", one_pass_select),
            ("10 clips, get_clip x10", separate),
            ("full decode (decode_all)", full),
        ]:
            t, (frames, seeks) = best_of(fn, repeat)
            rows.append((name, t, frames, v.stats.frames_converted, seeks, v.stats.peak_frames_held))
    return rows


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_clip_memory(path: str, start: float) -> dict:
    """Run in a fresh process: RSS growth and traced peak for one 2-s clip."""
    from videozoo.io import open_video

    with open_video(path) as v:
        # Warm up the decoder and allocator on another part of the file so
        # that the measured growth is the clip's, not one-off set-up.
        v.get_clip(0.0, 0.2)
        rss0 = _rss_mb()
        max0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        clip = v.get_clip(start, start + 2.0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        max1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "rss_delta_mb": _rss_mb() - rss0,
            "maxrss_delta_mb": (max1 - max0) / 1024,
            "traced_peak_mb": peak / 2**20,
            "clip_mb": clip.frames.numel() / 2**20,
            "frames_decoded": v.stats.frames_decoded,
            "peak_frames_held": v.stats.peak_frames_held,
            "file_mb": os.path.getsize(path) / 2**20,
            "duration": v.duration,
        }


def memory_in_subprocess(path: str, start: float) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--_measure", path, str(start)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", help="10-s test video (default: generate 640x360 H.264 30 fps)")
    ap.add_argument("--long-video", help="long video for the memory comparison (default: generate)")
    ap.add_argument("--long-minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None, help="decoder threads (default: FFmpeg's choice)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="only the timings (no long video)")
    ap.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._measure:
        print(json.dumps(measure_clip_memory(args._measure[0], float(args._measure[1]))))
        return

    from videogen import make_video

    tmp = tempfile.mkdtemp(prefix="vz-bench-")
    video = args.video
    if video is None:
        t0 = time.perf_counter()
        video = str(
            make_video(
                os.path.join(tmp, "ten.mp4"),
                codec="h264",
                fps=30,
                num_frames=300,
                width=640,
                height=360,
                gop=60,
                bframes=True,
            )
        )
        print(f"generated 10-s 640x360 H.264 in {time.perf_counter() - t0:.1f} s")
    long_video = args.long_video
    if long_video is None and not args.no_memory:
        t0 = time.perf_counter()
        n = int(args.long_minutes * 60 * 30)
        long_video = str(
            make_video(
                os.path.join(tmp, "long.mp4"),
                codec="h264",
                fps=30,
                num_frames=n,
                width=640,
                height=360,
                gop=60,
                bframes=True,
            )
        )
        print(f"generated {args.long_minutes:g}-min 640x360 H.264 in {time.perf_counter() - t0:.1f} s")

    print(f"\ncpu cores: {os.cpu_count()}, threads={args.threads}, best of {args.repeat}")
    print(f"{'task':36s} {'seconds':>8s} {'decoded':>8s} {'converted':>10s} {'seeks':>6s} {'held':>5s}")
    for name, t, frames, converted, seeks, held in time_decoding(video, args.threads, args.repeat):
        print(f"{name:36s} {t:8.3f} {frames:8d} {converted:10d} {seeks:6d} {held:5d}")
    if args.no_memory:
        return

    print("\none 2-s clip (60 frames, 640x360), fresh process each")
    print(
        f"{'video':10s} {'file MB':>8s} {'RSS delta MB':>13s} {'peak RSS delta MB':>18s} "
        f"{'traced peak MB':>15s} {'clip MB':>8s} {'decoded':>8s} {'held':>5s}"
    )
    for label, path, start in [("10 s", video, 4.5), (f"{args.long_minutes:g} min", long_video, 150.5)]:
        m = memory_in_subprocess(path, start)
        print(
            f"{label:10s} {m['file_mb']:8.1f} {m['rss_delta_mb']:13.1f} {m['maxrss_delta_mb']:18.1f} "
            f"{m['traced_peak_mb']:15.1f} "
            f"{m['clip_mb']:8.1f} {m['frames_decoded']:8d} {m['peak_frames_held']:5d}"
        )


if __name__ == "__main__":
    main()
