"""The `videozoo` command: a thin layer over the library. Each subcommand parses and delegates."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_models(args: argparse.Namespace) -> int:
    from videozoo.models.table import flops_notes, format_table, model_rows

    rows = model_rows()
    if args.json:
        from videozoo.models.flops import FLOPS_CONVENTION

        print(json.dumps({"flops_convention": FLOPS_CONVENTION, "models": rows}, indent=2))
    else:
        print(format_table(rows, markdown=args.markdown))
        for note in flops_notes():
            print(f"note: {note}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from videozoo.models.convert import convert_checkpoint

    name, out = convert_checkpoint(args.input, args.output, model=args.model)
    print(f"{args.input} -> {out} ({name})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import time

    from videozoo.engine.predictor import Predictor

    predictor = Predictor(
        args.model, weights=args.weights, views=args.views, device=args.device, precision=args.precision,
        threads=args.threads, batch_size=args.batch_size,
    )
    failed = 0
    for video in args.videos:
        t0 = time.perf_counter()
        try:
            result = predictor.predict_file(video)
            top = result.top_k(args.top_k)
            entry = {"video": video, "model": args.model, "views": args.views, "top_k": top,
                     "seconds": round(time.perf_counter() - t0, 3), **result.info}
        except Exception as e:  # the other videos still get their predictions
            failed += 1
            entry = {"video": video, "model": args.model, "views": args.views,
                     "error": f"{type(e).__name__}: {e}", "seconds": round(time.perf_counter() - t0, 3)}
        if args.json:
            print(json.dumps(entry), flush=True)
        elif "error" in entry:
            print(f"{video}: error: {entry['error']}", file=sys.stderr, flush=True)
        else:
            print(f"{video} ({args.model}, {args.views} views, {entry['seconds']:.2f} s)")
            for r in entry["top_k"]:
                print(f"  {r['probability']:7.2%}  {r['label']}")
    return 1 if failed else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from videozoo.jobs.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        model=args.model, data=args.data, out=args.out, weights=args.weights, views=args.views,
        data_root=args.data_root, batch_size=args.batch_size, workers=args.workers, precision=args.precision,
        device=args.device, resume=args.resume, save_view_scores=args.save_view_scores, limit=args.limit,
    )
    metrics = evaluate(cfg)
    if metrics is not None:
        shown = {k: v for k, v in metrics.items() if k not in ("config", "failures")}
        print(json.dumps(shown, indent=2))
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from videozoo.jobs.features import FeatureConfig, extract_features

    cfg = FeatureConfig(
        model=args.model, out=args.out, data=args.data, videos=args.videos or None, weights=args.weights,
        views=args.views, format=args.format, workers=args.workers, batch_size=args.batch_size,
        precision=args.precision, device=args.device, resume=args.resume,
    )
    summary = extract_features(cfg)
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from videozoo.data.synth import DEFAULT_CLASSES, make_dataset

    classes = args.classes.split(",") if args.classes else DEFAULT_CLASSES
    info = make_dataset(
        args.out, classes=classes, videos_per_class=args.videos_per_class, seed=args.seed,
        size=(args.size, args.size), num_frames=args.frames, fps=args.fps, val_fraction=args.val_fraction,
        variety=args.variety, clutter=args.clutter, workers=args.workers,
    )
    print(f"wrote {info.num_train} training and {info.num_val} validation videos to {info.root} (train.txt, val.txt, classes.txt)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from videozoo.train import train
    from videozoo.train.config import config_from_args

    import os

    result = train(config_from_args(args))
    # Under torchrun every process returns; the first one speaks for the run.
    if os.environ.get("RANK", "0") == "0":
        print(result.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from videozoo.cli.demo import run_demo

    return run_demo(args.out, quick=args.quick)


def _weights_arg(value: str) -> str | None:
    return None if value.lower() in ("none", "random") else value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="slow_r50", help="registry name (see `videozoo models`)")
    p.add_argument("--weights", type=_weights_arg, default="default",
                   help="default (the model's default weights: the official kinetics400 ones, or the packaged "
                   "ones of motion_tiny), a weights key such as kinetics400, a checkpoint path, or none (random)")
    p.add_argument("--views", default="1x1", help="1x1 (centred clip, centre crop) or 10x3 (clips x crops)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videozoo", description="Pretrained video action recognition models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the models with their computed and published figures")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("convert", help="convert a checkpoint (e.g. a Caffe2 .pkl) to .pth or .safetensors")
    p.add_argument("input", help="checkpoint in any supported format")
    p.add_argument("output", help="OUT.pth or OUT.safetensors")
    p.add_argument("--model", help="registry name (inferred from the checkpoint's keys if omitted)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("predict", help="top-k actions of videos")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    _add_model_args(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="decoder threads")
    p.add_argument("--batch-size", type=int, default=None, help="views per forward pass (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("evaluate", help="accuracy on a labelled dataset (resumable, torchrun-aware)")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="Kinetics CSV, folder per class, or `path label` list")
    p.add_argument("--data-root", help="folder of the videos of a Kinetics CSV (default: the CSV's folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from the predictions already in --out")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--batch-size", type=int, default=None, help="views per forward pass")
    p.add_argument("--save-view-scores", action="store_true", help="store every view's scores")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N videos only")
    p.set_defaults(func=_cmd_evaluate, device="auto")

    p = sub.add_parser("features", help="pooled features per clip and per video (resumable)")
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video files (or use --data)")
    _add_model_args(p)
    p.add_argument("--data", help="dataset spec instead of video files")
    p.add_argument("--out", required=True)
    p.add_argument("--format", default="npy", choices=["npy", "safetensors"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("synth", help="write a synthetic motion dataset (H.264 MP4)")
    p.add_argument("--out", required=True)
    p.add_argument("--classes", help="comma-separated motion classes (default: all 8)")
    p.add_argument("--videos-per-class", type=int, default=24)
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--size", type=int, default=112, help="frame height and width")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--fps", type=float, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variety", default="classic", choices=["classic", "wide"],
                   help="classic: one object, one look; wide: 1-3 objects of many shapes and textures, several "
                   "kinds of background, camera shake, changing brightness, more speeds and sizes")
    p.add_argument("--clutter", type=float, default=1.0,
                   help="scale of background texture, drift and sensor noise (0: flat background, clean frames)")
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=_cmd_synth)

    from videozoo.train.config import add_cli_arguments

    p = sub.add_parser("train", help="train or fine-tune (resumable, torchrun-aware)")
    add_cli_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="offline end-to-end demo: synthesise, fine-tune, evaluate, predict, report")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p.set_defaults(func=_cmd_demo)

    return parser


# Commands that run models over many large batches.
_HEAVY = {"predict", "evaluate", "features", "train", "demo"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in _HEAVY:
        from videozoo.engine.optimize import keep_freed_memory

        keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except (RuntimeError, ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"videozoo {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
