"""Zero-shot speed: X-CLIP per clip (video side), per label set (text side), a timeline over labels,
an embedding index and a search, on this machine.

    python benchmarks/zero_shot.py [--cache DIR] [--seconds 30] [--precision fp32 bf16] [--b16] [--json OUT]

The weights are the X-CLIP fixture's deterministic ones (../shared/fixtures/transformers/xclip_b32_8f.json,
written in the official transformers layout and loaded through it): speed does not depend on the values,
and the published files cannot be downloaded here. ``--b16`` also times one clip of
``xclip_b16_zero_shot`` (random initialisation: no fixture of that size). The video is synthetic motion
scenes at 640x360, 30 fps. The machine's CPU and its load average around each figure are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

LABELS = [
    "person cooking",
    "dog running",
    "someone falls",
    "forklift reverses",
    "goal celebration",
    "playing guitar",
    "riding a bike",
    "swimming",
    "dancing",
    "reading a book",
]


def fixture_weights(cache: Path) -> str:
    """The fixture's deterministic weights as an official directory (written once into ``cache``)."""
    folder = cache / "xclip-base-patch32-fixture"
    if (folder / "config.json").is_file():
        return str(folder)
    from fixtures_util import deterministic_state, load_transformer_fixture, write_transformers_dir

    fx = load_transformer_fixture("xclip_b32_8f")
    tmp = folder.with_name(folder.name + ".tmp")
    write_transformers_dir(tmp, fx["config"], deterministic_state(fx), weights="model.safetensors")
    os.replace(tmp, folder)
    return str(folder)


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "videozoo-zero-shot-bench"))
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the test video")
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--b16", action="store_true", help="also one clip of xclip_b16_zero_shot (slow)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch
    from timeline import cpu_name, synth_video

    import videozoo
    from videozoo.jobs.classify import zero_shot_engine
    from videozoo.jobs.embed import embed, search

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    video = synth_video(cache / f"scenes_{int(args.seconds)}s_640x360.mp4", args.seconds, 30, (360, 640), upscale=4)
    weights = fixture_weights(cache)
    out: dict = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "video_seconds": args.seconds, "runs": []}
    print(f"{out['cpu']}, {out['threads']} threads, load {load()}", flush=True)

    model = videozoo.create_model("xclip_b32_8f", weights=weights)

    def text_pass(labels: list[str]) -> None:
        model.__dict__.pop("_label_sets", None)  # the kept label sets: each pass embeds afresh
        model.set_labels(labels, template="a video of {}.")

    t_400 = best_of(2, lambda: text_pass([f"label number {i}" for i in range(400)]))
    t_10 = best_of(3, lambda: text_pass(LABELS))
    out["text"] = {"labels_10_s": round(t_10, 3), "labels_400_s": round(t_400, 2)}
    print(f"text side: 10 labels {t_10:.3f} s, 400 labels {t_400:.2f} s (load {load()})", flush=True)

    for precision in args.precision:
        engine = zero_shot_engine(model, LABELS, precision=precision, batch_size=1)
        view = engine.load(video).views[:1]  # (1, 3, 8, 224, 224)
        engine.forward(view)  # warm-up
        per_clip = best_of(3, lambda engine=engine, view=view: engine.forward(view))
        t0 = time.perf_counter()
        result = videozoo.timeline(str(video), model=engine, labels=None, none_threshold=0.5)
        timeline_s = time.perf_counter() - t0
        row = {
            "model": "xclip_b32_8f",
            "precision": engine.precision.name,
            "clip_s": round(per_clip, 3),
            "timeline_windows": len(result.windows),
            "timeline_s": round(timeline_s, 2),
            "timeline_realtime": round(result.duration / timeline_s, 2),
            "load": load(),
        }
        out["runs"].append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = embed([video], Path(tmp) / "index", model="xclip_b32_8f", weights=weights, labels=LABELS)
        embed_s = time.perf_counter() - t0
        stored = best_of(5, lambda: search(Path(tmp) / "index", "someone falls", top=5))
        t0 = time.perf_counter()
        search(Path(tmp) / "index", "a person jumps", top=5, model=model)
        query_s = time.perf_counter() - t0
    out["embed"] = {
        "rows": summary["rows"],
        "embed_s": round(embed_s, 2),
        "search_stored_text_ms": round(1000 * stored, 2),
        "search_new_text_ms": round(1000 * query_s, 1),
        "load": load(),
    }
    print(json.dumps(out["embed"]), flush=True)

    if args.b16:
        big = videozoo.create_model("xclip_b16_zero_shot", weights=None)
        engine = zero_shot_engine(big, LABELS, precision="fp32", batch_size=1)
        view = engine.load(video).views[:1]  # (1, 3, 32, 224, 224)
        per_clip = best_of(1, lambda: engine.forward(view))
        row = {"model": "xclip_b16_zero_shot", "precision": "fp32", "clip_s": round(per_clip, 2), "load": load()}
        out["runs"].append(row)
        print(json.dumps(row), flush=True)

    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
