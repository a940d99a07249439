"""VideoMAE, TimeSformer, ViViT and V-JEPA 2: videozoo's forward against transformers' own models.

For each model the fixture's deterministic weights (``../shared/fixtures/transformers/``) are written
once in the official transformers directory layout; transformers loads the directory with
``AutoModelForVideoClassification.from_pretrained`` (its default attention implementation, printed)
and videozoo with ``create_model(name, weights=dir)``. Both run in one process on the same torch
(the reference venv's: transformers is not a dependency of videozoo), eval mode, the fixture's clip,
at batch 1 and at the batch the engine picks for the model on this machine, fp32 and bf16 (CPU
autocast for both), the two taking turns; the best of ``--repeat`` calls of each (taking turns) after a warm-up call is
reported in clips/s, with the largest output difference relative to transformers' largest value.
``--rss`` also measures each implementation's peak resident memory (one fp32 batch-1 forward after
loading) in a subprocess of its own. On a shared machine the figures move with what else runs:
compare the ratios of one run.

    python -m venv /tmp/tf && /tmp/tf/bin/pip install torch transformers safetensors av numpy
    PYTHONPATH=. /tmp/tf/bin/python benchmarks/transformers_speed.py [--models videomae_b_k400 ...]
        [--batches 1 0] [--repeat 3] [--threads 2] [--rss] [--cache DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODELS = ("videomae_b_k400", "timesformer_b_k400", "vivit_b_k400", "vjepa2_l_ssv2")


def official_dir(stem: str, cache: Path) -> Path:
    """The fixture's weights as a transformers directory, written once into ``cache``."""
    from fixtures_util import load_transformer_fixture, write_official_transformer

    folder = cache / stem
    if not (folder / "config.json").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        write_official_transformer(load_transformer_fixture(stem), tmp)
        os.replace(tmp, folder)
    return folder


def load(impl: str, name: str, folder: Path) -> torch.nn.Module:
    if impl == "transformers":
        from transformers import AutoModelForVideoClassification

        return AutoModelForVideoClassification.from_pretrained(str(folder)).eval()
    import videozoo

    return videozoo.create_model(name, weights=str(folder)).eval()


def forward_fn(impl: str, model: torch.nn.Module, precision: str):
    """clip (B, C, T, H, W) -> float32 logits (B, K). transformers takes (B, T, C, H, W)."""

    def context():
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    video_key = "pixel_values_videos" if type(model).__name__.startswith("VJEPA2") else "pixel_values"

    def forward(clip: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), context():
            if impl == "transformers":
                return model(**{video_key: clip.transpose(1, 2)}).logits.float()
            return model(clip).float()

    return forward


def best_of(forward, x: torch.Tensor, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        forward(x)
        best = min(best, time.perf_counter() - t0)
    return best


def engine_batch(model: torch.nn.Module, clip: torch.Tensor) -> int:
    """The micro-batch the engine would take for this model and clip on this machine's CPU."""
    from videozoo.engine.batching import choose_batch_size, largest_activation_bytes, memory_budget

    device = torch.device("cpu")
    return choose_batch_size(largest_activation_bytes(model, clip), memory_budget(device), device=device)


def peak_rss(impl: str, name: str, folder: Path, threads: int) -> float:
    """MiB: peak resident memory of a fresh process that loads ``impl`` and runs one fp32 clip."""
    code = (
        "import sys, json, resource, torch; sys.argv = sys.argv[:1]; "
        f"torch.set_num_threads({threads}); "
        "import benchmarks.transformers_speed as b; from fixtures_util import fixture_input, "
        "load_transformer_fixture; "
        f"m = b.load({impl!r}, {name!r}, {str(folder)!r}); "
        f"b.forward_fn({impl!r}, m, 'fp32')(fixture_input(load_transformer_fixture({name!r}))); "
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"{impl} {name}: peak memory subprocess failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS[:3]), choices=MODELS)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--repeat", type=int, default=3, help="timed calls of each, taking turns (best is reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--batches", type=int, nargs="+", default=[1, 0], help="batch sizes to time; 0 is the engine's (default: 1 0)"
    )
    ap.add_argument("--rss", action="store_true", help="also peak memory per implementation (subprocesses)")
    ap.add_argument("--cache", type=Path, default=None, help="folder for the written directories")
    args = ap.parse_args()

    import transformers

    from fixtures_util import fixture_input, load_transformer_fixture

    torch.set_num_threads(args.threads)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="videozoo-tfspeed-"))
    cache.mkdir(parents=True, exist_ok=True)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for name in args.models:
        folder = official_dir(name, cache)
        models = {impl: load(impl, name, folder) for impl in ("transformers", "videozoo")}
        attn = getattr(models["transformers"].config, "_attn_implementation", "?")
        clip = fixture_input(load_transformer_fixture(name))  # (1, C, T, H, W)
        engine = engine_batch(models["videozoo"], clip)
        batches = [b or engine for b in args.batches]
        shape = "x".join(str(s) for s in clip.shape[2:])
        print(f"{name} {shape}: transformers attention {attn!r}, engine batch {engine}", flush=True)
        for precision in args.precision:
            run = {impl: forward_fn(impl, m, precision) for impl, m in models.items()}
            for batch in dict.fromkeys(batches):
                x = clip.expand(batch, *clip.shape[1:]).contiguous()
                want, got = run["transformers"](x), run["videozoo"](x)  # also the warm-up calls
                err = ((got - want).abs().max() / want.abs().max()).item()
                t_ref, t_ours = float("inf"), float("inf")
                for _ in range(args.repeat):  # taking turns, one call each
                    t_ref = min(t_ref, best_of(run["transformers"], x, 1))
                    t_ours = min(t_ours, best_of(run["videozoo"], x, 1))
                print(
                    f"{name} {precision} batch {batch}: transformers {batch / t_ref:.3f} clips/s, "
                    f"videozoo {batch / t_ours:.3f} clips/s ({t_ref / t_ours:.2f}x), "
                    f"output difference {err:.1e}, load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        del models
        if args.rss:
            rss = {impl: peak_rss(impl, name, folder, args.threads) for impl in ("transformers", "videozoo")}
            print(
                f"{name} peak RSS (load + one fp32 clip): transformers {rss['transformers']:.0f} MiB, "
                f"videozoo {rss['videozoo']:.0f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    main()
