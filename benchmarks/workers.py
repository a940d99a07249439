"""What fork-safe decoding costs: frame conversion with one swscale thread, and worker start-up.

1. Conversion of decoded yuv420p frames to rgb24 at 640x360 and 3840x2160: PyAV's automatic slice
   threads (``threads=0``, PyAV >= 18's default) against the one thread videozoo uses, per frame, best
   of several passes over the same frames, on one reformatter each. The decode time of a frame is
   printed beside them for scale.
2. Worker start-up: ``Engine.map`` over 4 short videos with 2 workers started by ``fork`` (the
   default), ``forkserver`` and ``spawn`` (``VIDEOZOO_WORKER_START``), each in a fresh process, timed
   from the call to the first result and for the whole map.

    python benchmarks/workers.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _frames(path: Path, n: int):
    with av.open(str(path)) as c:
        t0 = time.perf_counter()
        frames = [f for _, f in zip(range(n), c.decode(video=0), strict=False)]
        decode = (time.perf_counter() - t0) / len(frames)
    return frames, decode


def conversion(tmp: Path, repeat: int) -> list[dict]:
    from av.video.reformatter import VideoReformatter

    from videogen import make_video

    rows = []
    for w, h, n in ((640, 360, 30), (3840, 2160, 8)):
        path = make_video(tmp / f"{w}x{h}.mp4", num_frames=n, width=w, height=h, pattern="noise")
        frames, decode = _frames(path, n)
        row = {"size": f"{w}x{h}", "decode_ms": decode * 1e3}
        for threads in (0, 1):
            r = VideoReformatter()
            r.reformat(frames[0], format="rgb24", threads=threads)  # the context is built once
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for f in frames:
                    np.asarray(r.reformat(f, format="rgb24", threads=threads).to_ndarray())
                best = min(best, (time.perf_counter() - t0) / len(frames))
            row[f"threads{threads}_ms"] = best * 1e3
        rows.append(row)
    return rows


STARTUP = """
import json, sys, time, torch
import videozoo
engine = videozoo.Engine.build("x3d_xs", weights=None)
paths = sys.argv[1:]
t0 = time.perf_counter(); first = None
for r in engine.map(paths, workers=2):
    assert r.error is None, r.error
    first = first or time.perf_counter() - t0
print(json.dumps({"first": first, "total": time.perf_counter() - t0}))
"""


def startup(tmp: Path, repeat: int) -> list[dict]:
    from videogen import make_video

    paths = [str(make_video(tmp / f"s{i}.mp4", num_frames=60, width=320, height=240, seed=i)) for i in range(4)]
    rows = []
    for method in ("fork", "forkserver", "spawn"):
        env = {**os.environ, "VIDEOZOO_WORKER_START": method}
        runs = []
        for _ in range(repeat):
            out = subprocess.run(
                [sys.executable, "-c", STARTUP, *paths], env=env, capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows.append(
            {
                "method": method,
                "first_s": min(r["first"] for r in runs),
                "total_s": min(r["total"] for r in runs),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        conv = conversion(tmp, args.repeat)
        start = startup(tmp, args.repeat)
    print(f"CPU: {_cpu()}; PyAV {av.__version__}")
    print("\n| frame | decode (ms) | rgb24, threads=0 (ms) | rgb24, threads=1 (ms) | ratio |")
    print("|---|---|---|---|---|")
    for r in conv:
        ratio = r["threads1_ms"] / r["threads0_ms"]
        print(
            f"| {r['size']} | {r['decode_ms']:.2f} | {r['threads0_ms']:.2f} | {r['threads1_ms']:.2f} | {ratio:.2f}x |"
        )
    print("\n| worker start | first result (s) | 4 videos (s) |")
    print("|---|---|---|")
    for r in start:
        print(f"| {r['method']} | {r['first_s']:.2f} | {r['total_s']:.2f} |")


if __name__ == "__main__":
    main()
