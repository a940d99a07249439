"""Load on `videozoo serve`: requests per second and p50/p95 latency under concurrent clients.

For each model a real server process is started on 127.0.0.1 (a free port) with random weights
(the embedded motion_tiny takes its packaged ones), and CLIENTS threads post the same short clip to
/v1/predict until REQUESTS answers are in or SECONDS have passed (both bounded). Latency is from
sending the upload to the last byte of the answer. A first request warms the server up and is not
counted. Only 127.0.0.1 is contacted.

    python benchmarks/serve_load.py [--models motion_tiny x3d_xs] [--clients 1 4] [--requests 40]
                                    [--seconds 60] [--workers 1] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def cpu_description() -> str:
    info = open("/proc/cpuinfo").read()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} ({', '.join(shown) or 'no avx2'}), {os.cpu_count()} cores"


def default_models() -> list[str]:
    import videozoo

    first = "motion_tiny" if "motion_tiny" in videozoo.list_models() else "x3d_xs"
    return [first, "x3d_xs"] if first != "x3d_xs" else ["x3d_xs"]


def start_server(model: str, workers: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    weights = "default" if model == "motion_tiny" else "none"
    cmd = [
        sys.executable,
        "-m",
        "videozoo",
        "serve",
        "--model",
        model,
        "--weights",
        weights,
        "--port",
        "0",
        "--workers",
        str(workers),
        "--max-queue",
        "64",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    url, deadline = None, time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        url = url or (m.group(1) if m else None)
        if "ready:" in line and url:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, url
    proc.kill()
    raise RuntimeError(f"the server for {model} did not start")


def load(url: str, clip: Path, clients: int, requests: int, seconds: float) -> dict:
    data = clip.read_bytes()
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    issued = [0]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    if issued[0] >= requests or time.monotonic() > stop_at:
                        return
                    issued[0] += 1
                t0 = time.perf_counter()
                r = http.post("/v1/predict", files={"video": (clip.name, data, "video/mp4")})
                dt = time.perf_counter() - t0
                with lock:
                    (latencies if r.status_code == 200 else errors).append(
                        dt if r.status_code == 200 else r.status_code
                    )

    with httpx.Client(base_url=url, timeout=120) as http:  # warm-up, not counted
        assert http.post("/v1/predict", files={"video": (clip.name, data)}).status_code == 200
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        for f in [ex.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(p * (len(latencies) - 1))))] if latencies else float("nan")

    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "requests_per_second": round(len(latencies) / wall, 2) if wall > 0 else 0.0,
        "p50_ms": round(1000 * pct(0.50), 1),
        "p95_ms": round(1000 * pct(0.95), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--clients", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--requests", type=int, default=40, help="answers to collect per run (bound)")
    ap.add_argument("--seconds", type=float, default=60.0, help="time per run (bound)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from videogen import make_video

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # A 2-second 320x240 30-fps H.264 clip (about what a phone clip is, scaled down).
        clip = make_video(tmp / "clip.mp4", num_frames=60, width=320, height=240, pattern="noise")
        load1 = os.getloadavg()[0]
        for model in args.models or default_models():
            proc, url = start_server(model, args.workers, tmp)
            try:
                for clients in args.clients:
                    row = {
                        "model": model,
                        "workers": args.workers,
                        **load(url, clip, clients, args.requests, args.seconds),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"\nCPU: {cpu_description()}; load average before: {load1:.2f}, after: {os.getloadavg()[0]:.2f}")
    print("\n| model | workers | clients | requests | req/s | p50 ms | p95 ms |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['workers']} | {r['clients']} | {r['requests']} | {r['requests_per_second']} | "
            f"{r['p50_ms']} | {r['p95_ms']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_description(), "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
