"""Swin3D and MViTv2: videozoo's forward against torchvision's own models, same weights, same clip.

Both run in one process on the same torch (the reference venv's: torchvision is not a dependency of
videozoo), eval mode, batch 1 at the entry's 224 crop, fp32 and bf16 (CPU autocast for both), the two
taking turns; the best of ``--repeat`` calls after a warm-up call is reported, with the largest
output difference relative to torchvision's largest value. On a shared machine the figures move
with what else runs: compare the ratios of one run.

    bash ../shared/peers/setup.sh   # the reference venv, /tmp/videozoo-peers
    PYTHONPATH=. /tmp/videozoo-peers/bin/python benchmarks/tv_transformers.py [--models swin3d_t mvit_v2_s]
        [--frames 16] [--repeat 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch


def _best(forward, x, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        forward(x)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["swin3d_t", "mvit_v2_s"])
    ap.add_argument("--frames", type=int, default=16, help="clip length (MViTv2 takes only 16)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    import peer_shims  # noqa: F401  (the reference venv's torchvision fixes; see ../shared/peers)
    import torchvision.models.video as tv

    from videozoo.models.registry import get_spec

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    for name in args.models:
        ref = getattr(tv, name)().eval()
        spec = get_spec(name)
        ours = spec.build().eval()
        ours.load_state_dict(spec.cls.convert_checkpoint("torchvision", ref.state_dict(), source=name))
        frames = 16 if name.startswith("mvit") else args.frames
        x = torch.randn(1, 3, frames, 224, 224, generator=torch.Generator().manual_seed(0))
        for precision in ("fp32", "bf16"):

            def context(precision=precision):
                if precision == "bf16":
                    return torch.autocast("cpu", dtype=torch.bfloat16)
                return contextlib.nullcontext()

            def run(model, context=context):
                def forward(clip):
                    with torch.inference_mode(), context():
                        return model(clip).float()

                return forward

            want, got = run(ref)(x), run(ours)(x)  # also the warm-up calls
            err = ((got - want).abs().max() / want.abs().max()).item()
            t_ref, t_ours = float("inf"), float("inf")
            for _ in range(2):  # taking turns
                t_ref = min(t_ref, _best(run(ref), x, args.repeat))
                t_ours = min(t_ours, _best(run(ours), x, args.repeat))
            print(
                f"{name} {frames}x224x224 {precision}: torchvision {1 / t_ref:.3f} clips/s, "
                f"videozoo {1 / t_ours:.3f} clips/s ({t_ref / t_ours:.2f}x), output difference {err:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
