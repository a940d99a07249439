"""Prediction speed and memory: videozoo against the seed documents' own pipeline, in one run.

On one 10-second 640x360 H.264 video, for slow_r50 and slowfast_r50 at 1x1 and 10x3 views, runs
- the seed pipeline (`../shared/peers/seed_pipeline.py`: pytorchvideo EncodedVideo + the cards'
  transforms + the hub model) in the peers venv (`../shared/peers/setup.sh` builds it), and
- `videozoo predict` with its default settings (precision auto) and, where auto is not fp32, in fp32,
each as a separate process timed from outside (start-up, model build, decoding, forward; random
weights in both), with the process's peak resident memory (getrusage of the child). It also
prints, per model:
- the start-up time: process start to the first forward pass, loading a cached checkpoint;
- the forward pass's multiply-adds per second against this machine's measured convolution rate
  in the same precision (how far from the hardware limit the arithmetic runs);
- bf16 against fp32 on the same weights (where bf16 is native): top-1 agreement per view and the
  logit error.

    python benchmarks/predict.py [--video PATH] [--peers VENV] [--repeat 2] [--json OUT.json]

Run under ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` to measure, on an AVX-512 CPU, what
an AVX2-only CPU's instruction set gives (both pipelines under the same cap; precision auto then
takes fp32, as it does on a CPU without native bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measured
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEOZOO_SHARED", ROOT.parent / "shared"))
CASES = [("slow_r50", "1x1", 1), ("slow_r50", "10x3", 30), ("slowfast_r50", "1x1", 1), ("slowfast_r50", "10x3", 30)]

STARTUP_SCRIPT = r"""
import os, sys, time
def since_start():
    # Seconds since this process was created (its start time in clock ticks since boot).
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
    return float(open("/proc/uptime").read().split()[0]) - start
from videozoo.engine import Engine
engine = Engine.build(sys.argv[1], weights=sys.argv[2], views="1x1")
import torch
from videozoo.models.flops import view_input
x = view_input(__import__("videozoo").get_spec(sys.argv[1]))
first = since_start()
engine.forward(x)
print(f"{first:.3f}")
"""


def cpu_description() -> str:
    """CPU model, the vector/matrix flags that decide convolution speed, and the core count."""
    info = open("/proc/cpuinfo").read()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    described = f"{model} ({', '.join(shown) or 'no avx2'}), {os.cpu_count()} cores"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if cap:  # an AVX2-only CPU's instruction set, on this one: ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
        described += f", oneDNN capped at {cap}, ATen at {os.environ.get('ATEN_CPU_CAPABILITY', 'default')}"
    return described


def make_video(path: Path) -> Path:
    """10 s of 640x360 30 fps H.264 with moving texture (the synthetic generator's content)."""
    from videozoo.data.synth import render_video, write_video

    video = render_video("move_right", 0, size=(360, 640), num_frames=300)
    return write_video(path, video.frames, fps=30, crf=23)


def conv_gflops(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """This machine's sustained rate for a large 1x3x3 convolution in `dtype` (multiply-adds / s / 1e9)."""
    conv = torch.nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1), bias=False).to(dtype)
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(8, 256, 8, 28, 28).to(dtype).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        conv(x)
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conv(x)
            count += 1
    return count * x[:, 0].numel() * conv.weight.numel() / (time.perf_counter() - t0) / 1e9


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one process, timed from outside (measured.py)."""
    m = measured.run_measured(cmd, env)
    if m["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{m['stderr'][-2000:]}")
    return m["wall"], m["rss_mb"], m["stdout"]


def best(cmd: list[str], repeat: int, env: dict | None = None) -> tuple[float, float, str]:
    runs = [run_measured(cmd, env) for _ in range(repeat)]
    return min(runs, key=lambda r: r[0])


def forward_rate(name: str, views: str, precision: str, video: Path, model) -> dict:
    """Inside this process: forward seconds, achieved GFLOP/s and the mean logits of one video's views."""
    from videozoo.engine import Engine
    from videozoo.models.flops import model_gflops

    engine = Engine(model, views=views, precision=precision)
    loaded = engine.load(video)
    engine.forward(loaded.views)  # warm-up (oneDNN primitive creation)
    t0 = time.perf_counter()
    engine.forward(loaded.views)
    fwd = time.perf_counter() - t0
    logits = engine.forward(loaded.views, "logits")  # (V, 400)
    return {
        "forward_s": fwd,
        "gflop_per_s": model_gflops(name) * loaded.num_views / fwd,
        "logits": logits,
        "batch_size": engine.batch_size,
    }


def startup_seconds(name: str, tmp: Path, repeat: int) -> float:
    """Process start to the first forward pass, with the checkpoint already on disk."""
    from videozoo import create_model, save_model

    ckpt = tmp / f"{name}.safetensors"
    if not ckpt.exists():
        save_model(create_model(name), ckpt)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        float(run_measured([sys.executable, "-c", STARTUP_SCRIPT, name, str(ckpt)], env)[2].strip())
        for _ in range(repeat)
    ]
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path)
    ap.add_argument("--peers", default="/tmp/videozoo-peers", help="venv of the reference implementations")
    ap.add_argument("--repeat", type=int, default=2, help="runs per case (the fastest is kept)")
    ap.add_argument("--models", nargs="*", default=None, help="restrict to these models")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from videozoo import create_model
    from videozoo.engine.optimize import keep_freed_memory
    from videozoo.engine.precision import cpu_has_bf16, resolve_precision

    tmp = Path(tempfile.mkdtemp(prefix="vz-bench-"))
    video = args.video or make_video(tmp / "bench_640x360_10s.mp4")
    setup = SHARED / "peers" / "setup.sh"
    setup_out = subprocess.run(["bash", str(setup), args.peers], capture_output=True, text=True, check=True).stdout
    peers_python = setup_out.strip().splitlines()[-1]
    seed_script = str(SHARED / "peers" / "seed_pipeline.py")
    bf16 = cpu_has_bf16()
    auto = resolve_precision("auto", "cpu").name
    keep_freed_memory()  # as the videozoo commands do
    peak = {"fp32": conv_gflops(torch.float32)}
    if bf16:
        peak["bf16"] = conv_gflops(torch.bfloat16)
    cpu = cpu_description()
    print(f"machine: {cpu}; torch {torch.__version__}; video: {video.name} (640x360, 10 s, 30 fps, H.264)")
    print(
        "convolution rate (multiply-adds): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
        + f"; precision auto = {auto}"
    )

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    cases = [c for c in CASES if not args.models or c[0] in args.models]
    startup = {}
    for name in dict.fromkeys(c[0] for c in cases):
        startup[name] = startup_seconds(name, tmp, args.repeat)
        print(f"{name}: start-up to the first forward pass (cached checkpoint) {startup[name]:.2f} s", flush=True)
    for name, views, nviews in cases:
        seed_wall, seed_rss, seed_out = best([peers_python, seed_script, str(video), name, str(nviews)], args.repeat)
        row = {
            "model": name,
            "views": views,
            "seed_s": seed_wall,
            "seed_rss_mb": seed_rss,
            "seed_inner": json.loads(seed_out.strip().splitlines()[-1]),
        }
        torch.manual_seed(0)
        model = create_model(name)  # one set of random weights for every precision
        precisions = ["auto"] + (["fp32"] if auto != "fp32" else [])
        logits = {}
        for precision in precisions:
            cmd = [
                sys.executable,
                "-m",
                "videozoo",
                "predict",
                str(video),
                "--model",
                name,
                # A checkpoint on disk, as a user's weights are: the OpenVINO backend (auto, where
                # installed) converts it once and reads its cache on later runs (the faster run counts).
                "--weights",
                str(tmp / f"{name}.safetensors"),
                "--views",
                views,
                "--precision",
                precision,
                "--json",
            ]
            wall, rss, _ = best(cmd, args.repeat, env)
            used = auto if precision == "auto" else precision
            rate = forward_rate(name, views, used, video, model)
            logits[used] = rate.pop("logits")
            row[precision] = {
                "precision": used,
                "s": wall,
                "rss_mb": rss,
                "ratio": seed_wall / wall,
                **rate,
                "share_of_peak": rate["gflop_per_s"] / peak[used],
            }
        if "bf16" in logits and "fp32" in logits:
            a, b = logits["fp32"], logits["bf16"]
            # Per view, on the same weights; random weights give logits of small spread, which makes
            # top-1 agreement a harsher test than with trained weights; the logit error is scale-free.
            row["bf16_top1_agreement"] = float((a.argmax(1) == b.argmax(1)).float().mean())
            row["bf16_logit_error"] = float((a - b).abs().max() / (a - a.mean(1, keepdim=True)).abs().max())
        rows.append(row)
        line = f"{name:13s} {views:5s} seed {seed_wall:6.2f} s {seed_rss:5.0f} MB"
        for precision in precisions:
            r = row[precision]
            line += (
                f" | videozoo {precision}={r['precision']} {r['s']:6.2f} s {r['rss_mb']:5.0f} MB ({r['ratio']:3.1f}x;"
                f" batch {r['batch_size']}, forward {r['gflop_per_s']:3.0f} GFLOP/s = {r['share_of_peak']:3.0%})"
            )
        if "bf16_top1_agreement" in row:
            line += (
                f" | bf16 top-1 agreement {row['bf16_top1_agreement']:.0%}, logit error {row['bf16_logit_error']:.1e}"
            )
        print(line, flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": cpu, "conv_gflops": peak, "startup_s": startup, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
