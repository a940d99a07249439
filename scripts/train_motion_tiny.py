"""Retrain motion_tiny's packaged weights on a CPU: the packaged weights, fine-tuned on fresh data.

    python scripts/train_motion_tiny.py                   # synthesise, train, export to runs/motion_tiny
    python scripts/train_motion_tiny.py --install         # ... and replace the packaged weights
    python scripts/train_motion_tiny.py --quick           # a small run that checks the set-up runs

Steps: (1) render the wide-variety synthetic dataset (`videozoo synth --variety wide` with the
arguments in DATA below), (2) train with the settings of scripts/motion_tiny.yaml (which start from
the packaged weights, `weights: synthetic_motion`; `weights: null` trains from scratch), (3) write the
weights as safetensors with their record (`CheckpointMeta`: model, architecture, clip, class names,
training settings, videozoo version), and print their sha256 and size.
With --install the file is copied to videozoo/weights/embedded/ and the registry's sha256 and size
(videozoo/models/motion_tiny.py) are rewritten to match. `summary.json` in the output folder
records the timings and the CPU. Videos written whole by an earlier run with the same arguments
are used again. Run it with OMP_NUM_THREADS=1 on a machine whose cores other jobs are using
(docs/training.md, CPU threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from videozoo.data.synth import DatasetInfo, make_dataset
from videozoo.models.motion_tiny import CLASS_NAMES
from videozoo.train import load_config, train
from videozoo.weights.checkpoint import read_checkpoint, save_checkpoint
from videozoo.weights.hub import sha256_of

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "scripts" / "motion_tiny.yaml"
PACKAGED = ROOT / "videozoo" / "weights" / "embedded" / "motion_tiny.safetensors"
REGISTRY = ROOT / "videozoo" / "models" / "motion_tiny.py"

# The training data: 8 classes x 600 videos of 24 frames at 96x96, 15 fps, 10% held out.
DATA = dict(videos_per_class=600, val_fraction=0.1, size=(96, 96), num_frames=24, fps=15, variety="wide", seed=1)
QUICK = dict(DATA, videos_per_class=60)


def cpu_description() -> dict:
    """Model name, the vector extensions that matter for convolutions, and the cores in use."""
    info = {
        "cpu": platform.processor() or "unknown",
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    info["cpu"] = fields.get("Model name", info["cpu"]).strip()
    flags = set(fields.get("Flags", "").split())
    info["flags"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return info


def existing_dataset(root: Path, recipe: dict) -> DatasetInfo | None:
    """The dataset at `root` if an earlier run wrote it whole with the same arguments, else None."""
    try:
        params = json.loads((root / "synth.json").read_text())
        lines = (root / "train.txt").read_text().splitlines() + (root / "val.txt").read_text().splitlines()
    except (OSError, ValueError):
        return None
    wanted = {**{k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()}, "classes": list(CLASS_NAMES)}
    if any(params.get(k) != v for k, v in wanted.items()) or not all(
        (root / line.split()[0]).is_file() for line in lines
    ):
        return None
    return DatasetInfo(
        root=root,
        classes=CLASS_NAMES,
        train_list=root / "train.txt",
        val_list=root / "val.txt",
        classes_file=root / "classes.txt",
        num_train=params["num_train"],
        num_val=params["num_val"],
        size=tuple(params["size"]),
        num_frames=params["num_frames"],
        fps=params["fps"],
        seed=params["seed"],
        variety=params["variety"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/motion_tiny", help="output folder (data, train, weights)")
    parser.add_argument("--install", action="store_true", help="replace the packaged weights and their registry hash")
    parser.add_argument("--quick", action="store_true", help="60 videos per class and 3 epochs: checks the set-up runs")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering the videos")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training run in --out")
    args = parser.parse_args(argv)
    if args.install and args.quick:
        parser.error("--install takes the full run, not --quick")
    out = Path(args.out)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    recipe = QUICK if args.quick else DATA
    data = existing_dataset(out / "data", recipe)
    if data is None:
        data = make_dataset(out / "data", classes=CLASS_NAMES, workers=args.workers, **recipe)
        timings["synthesise_s"] = round(time.perf_counter() - t, 1)
        print(f"synthesised {data.num_train} + {data.num_val} videos in {timings['synthesise_s']} s", flush=True)
    else:
        print(f"{data.root}: the videos of an earlier run with the same arguments are used again", flush=True)

    cfg = load_config(
        CONFIG,
        data=str(data.train_list),
        val_data=str(data.val_list),
        classes=str(data.classes_file),
        out=str(out / "train"),
    )
    if args.quick:
        cfg = dataclasses.replace(cfg, epochs=3)
    t = time.perf_counter()
    result = train(dataclasses.replace(cfg, resume=args.resume).validate())
    timings["train_s"] = round(time.perf_counter() - t, 1)
    print(result.summary(), flush=True)
    if result.model_path is None:
        print(f"training stopped early; run again with --resume --out {out} to continue", file=sys.stderr)
        return 1

    ckpt = read_checkpoint(result.model_path)
    if ckpt.meta is None or ckpt.class_names != list(CLASS_NAMES):
        raise SystemExit(f"{result.model_path}: trained on {ckpt.class_names}, expected {list(CLASS_NAMES)}")
    # The training's own record travels with the weights: model, architecture, clip, classes, the
    # training settings and the videozoo version.
    weights = save_checkpoint(out / "motion_tiny.safetensors", ckpt.state_dict, meta=ckpt.meta)
    digest, size = sha256_of(weights), weights.stat().st_size
    print(f"{weights}: {size} bytes, sha256 {digest}")

    summary = {
        **timings,
        "total_s": round(sum(timings.values()), 1),
        "data_reused": "synthesise_s" not in timings,
        "sha256": digest,
        "size": size,
        "final": result.final,
        "data": {k: list(v) if isinstance(v, tuple) else v for k, v in DATA.items()},
        "quick": args.quick,
        **cpu_description(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: summary.get(k)
                for k in ("synthesise_s", "train_s", "total_s", "cpu", "flags", "cores", "torch_threads")
            }
        )
    )

    if args.install:
        shutil.copyfile(weights, PACKAGED)
        text = REGISTRY.read_text()
        text = re.sub(r'WEIGHTS_SHA256 = "[0-9a-f]{64}"', f'WEIGHTS_SHA256 = "{digest}"', text)
        text = re.sub(r"WEIGHTS_SIZE = \d+", f"WEIGHTS_SIZE = {size}", text)
        REGISTRY.write_text(text)
        print(f"installed {PACKAGED} and updated {REGISTRY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
