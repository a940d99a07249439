"""Prediction speed: videozoo against the seed documents' own pipeline, in one run, same video.

For slow_r50 and slowfast_r50 at 1x1 and 10x3 views on one 10-second 640x360 H.264 video, runs
- the seed pipeline (`../shared/peers/seed_pipeline.py`: pytorchvideo EncodedVideo + the cards'
  transforms + the hub model), in the peers venv (`../shared/peers/setup.sh` builds it), and
- `videozoo predict` in fp32 and (where the CPU has native bf16) bf16,
each as a separate process timed from outside (start-up, model build, decoding, forward), and
prints seconds per video and the ratio. It also measures this machine's convolution rate in each
precision and prints the GFLOP/s each videozoo forward pass achieved against it, and for bf16 the
top-1 agreement with fp32 and the logit error (same random weights, every view).

    python benchmarks/predict.py [--video PATH] [--peers VENV] [--repeat 2] [--json OUT.json]
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

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEOZOO_SHARED", ROOT.parent / "shared"))
CASES = [("slow_r50", "1x1", 1), ("slow_r50", "10x3", 30), ("slowfast_r50", "1x1", 1), ("slowfast_r50", "10x3", 30)]


def make_video(path: Path) -> Path:
    """10 s of 640x360 30 fps H.264 with moving texture (the synthetic generator's content)."""
    from videozoo.data.synth import render_video, write_video

    video = render_video("move_right", 0, size=(360, 640), num_frames=300)
    return write_video(path, video.frames, fps=30, crf=23)


def conv_gflops(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """This machine's sustained rate for a large 1x3x3 convolution in `dtype` (multiply-adds / s / 1e9).

    The models' time goes to oneDNN convolutions, so this (not a BLAS matmul, which on some CPUs
    takes a slower path) is the rate a forward pass can approach.
    """
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


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def best(cmd: list[str], repeat: int) -> tuple[float, str]:
    runs = [timed(cmd) for _ in range(repeat)]
    return min(runs, key=lambda r: r[0])


def videozoo_forward_rate(model, views: str, precision: str, video: Path) -> dict:
    """Inside this process: forward seconds, achieved GFLOP/s and the mean logits of one video's views."""
    from videozoo.engine.predictor import Predictor, load_views
    from videozoo.models.flops import model_gflops

    pred = Predictor(model, views=views, precision=precision)
    loaded = load_views(video, pred.transform)
    pred.score_views(loaded.views)  # warm-up (oneDNN primitive creation)
    t0 = time.perf_counter()
    pred.score_views(loaded.views)
    fwd = time.perf_counter() - t0
    logits = pred._batched(lambda x: pred.model.position_logits(x).mean(1), loaded.views)  # (V, 400)
    gflops = model_gflops(model.model_name) * loaded.num_views
    return {"forward_s": fwd, "gflop_per_s": gflops / fwd, "logits": logits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path)
    ap.add_argument("--peers", default="/tmp/videozoo-peers", help="venv of the reference implementations")
    ap.add_argument("--repeat", type=int, default=2, help="runs per case (the fastest is kept)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vz-bench-"))
    video = args.video or make_video(tmp / "bench_640x360_10s.mp4")
    setup = SHARED / "peers" / "setup.sh"
    setup_out = subprocess.run(["bash", str(setup), args.peers], capture_output=True, text=True, check=True).stdout
    peers_python = setup_out.strip().splitlines()[-1]
    seed_script = str(SHARED / "peers" / "seed_pipeline.py")
    bf16 = __import__("videozoo.engine.optimize", fromlist=["cpu_has_bf16"]).cpu_has_bf16()
    from videozoo import create_model
    from videozoo.engine.optimize import keep_freed_memory

    keep_freed_memory()  # as the videozoo commands do
    peak = {"fp32": conv_gflops(torch.float32)}
    if bf16:
        peak["bf16"] = conv_gflops(torch.bfloat16)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    print(f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"video: {video.name} (640x360, 10 s, H.264)")
    print("convolution rate (multiply-adds): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
          + f"; bf16 native: {bf16}")

    rows = []
    for name, views, nviews in CASES:
        seed_wall, seed_out = best([peers_python, seed_script, str(video), name, str(nviews)], args.repeat)
        seed = json.loads(seed_out.strip().splitlines()[-1])
        row = {"model": name, "views": views, "seed_s": seed_wall, "seed_inner": seed}
        precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
        torch.manual_seed(0)
        model = create_model(name)  # one set of random weights for both precisions
        for precision in precisions:
            cmd = [sys.executable, "-m", "videozoo", "predict", str(video), "--model", name, "--weights", "none",
                   "--views", views, "--precision", precision, "--json"]
            wall, _ = best(cmd, args.repeat)
            rate = videozoo_forward_rate(model, views, precision, video)
            row[precision] = {"s": wall, "ratio": seed_wall / wall, **{k: v for k, v in rate.items() if k != "logits"}}
            row[precision]["share_of_peak"] = rate["gflop_per_s"] / peak[precision]
            row[precision]["_logits"] = rate["logits"]
        if "bf16" in row:
            a, b = row["fp32"].pop("_logits"), row["bf16"].pop("_logits")
            # Per view, on the same weights. Random weights give logits of small spread, which makes
            # top-1 agreement a harsher test than with trained weights; the logit error is scale-free.
            row["bf16_top1_agreement"] = float((a.argmax(1) == b.argmax(1)).float().mean())
            row["bf16_logit_error"] = float((a - b).abs().max() / (a - a.mean(1, keepdim=True)).abs().max())
        else:
            row["fp32"].pop("_logits")
        rows.append(row)
        f32 = row["fp32"]
        line = (f"{name:13s} {views:5s} seed {seed_wall:7.2f} s | "
                f"videozoo fp32 {f32['s']:7.2f} s ({f32['ratio']:4.1f}x, "
                f"forward {f32['gflop_per_s']:4.0f} GFLOP/s = {f32['share_of_peak']:4.0%} of conv rate)")
        if "bf16" in row:
            b16 = row["bf16"]
            line += (f" | bf16 {b16['s']:7.2f} s ({b16['ratio']:4.1f}x, forward {b16['gflop_per_s']:4.0f} GFLOP/s = "
                     f"{b16['share_of_peak']:4.0%}; top-1 agreement {row['bf16_top1_agreement']:.0%}, "
                     f"logit error {row['bf16_logit_error']:.1e})")
        print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu, "conv_gflops": peak, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
