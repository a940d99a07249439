"""The `videozoo` command: a thin layer over the library. Each subcommand parses and delegates."""

from __future__ import annotations

import argparse
import json
import sys

from videozoo.data.workers import DEFAULT_STALL_SECONDS


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


def _cmd_doctor(args: argparse.Namespace) -> int:
    from videozoo.jobs import doctor

    r = doctor.report(self_test_steps=not args.no_self_test, limit=args.step_timeout)
    print(json.dumps(r, indent=2) if args.json else doctor.format_report(r), flush=True)
    code = 0 if r["ok"] else 1
    for check in r["checks"]:
        if check["status"] in ("failed", "hung"):
            print(f"videozoo doctor: {check['name']} {check['status']}: {check['detail']}", file=sys.stderr, flush=True)
    doctor.flush_and_exit_if_hung(r, code)
    return code


def _cmd_convert(args: argparse.Namespace) -> int:
    from videozoo.models.convert import convert_checkpoint

    name, out = convert_checkpoint(args.input, args.output, model=args.model)
    print(f"{args.input} -> {out} ({name})")
    return 0


def _ray_options(args: argparse.Namespace):
    """``--ray [ADDRESS]`` and ``--ray-actors`` -> RayOptions, or None without --ray."""
    if args.ray is None:
        if args.ray_actors is not None:
            raise ValueError("--ray-actors: only with --ray")
        return None
    from videozoo.jobs.ray_run import RayOptions

    return RayOptions(address=args.ray or None, actors=args.ray_actors)


def _print_entry(entry: dict, args: argparse.Namespace) -> None:
    video = entry["video"]
    if args.json:
        print(json.dumps(entry), flush=True)
    elif "error" in entry:
        print(f"{video}: error: {entry['error']}", file=sys.stderr, flush=True)
    else:
        print(f"{video} ({args.model}, {entry['views']} views, {entry['precision']}, {entry['seconds']:.2f} s)")
        for r in entry["top_k"]:
            print(f"  {r['probability']:7.2%}  {r['label']}")


def _cmd_predict(args: argparse.Namespace) -> int:
    ray = _ray_options(args)
    if ray is not None:
        return _cmd_predict_ray(args, ray)
    from videozoo.engine import Engine

    engine = Engine.build(
        args.model,
        weights=args.weights,
        views=args.views,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        batch_size=args.batch_size,
        backend=args.backend,
        images=args.allow_images,
    )
    print(
        f"videozoo predict: {args.model}, {engine.plan} views, precision {engine.precision}, "
        f"{engine.batch_size} views per forward pass, on {engine.device} ({engine.backend})",
        file=sys.stderr,
        flush=True,
    )
    failed = 0
    # One video decodes on this process; several decode in a worker while the model runs.
    results = engine.map(args.videos, workers=1 if len(args.videos) > 1 else 0, stall_timeout=args.stall_timeout)
    for result in results:
        video = result.path
        if result.error is not None:
            failed += 1
            entry = {
                "video": video,
                "model": args.model,
                "views": str(engine.plan),
                "precision": engine.precision.name,
                "error": _with_hint(result.error),
            }
        else:
            entry = result.prediction.entry(args.model, top_k=args.top_k)
        _print_entry(entry, args)
    return 1 if failed else 0


def _with_hint(error: str) -> str:
    """A still image's error, with the flag that scores it anyway."""
    if error.startswith("StillImageError"):
        return f"{error}; --allow-images scores it as a one-frame clip"
    return error


def _cmd_predict_ray(args: argparse.Namespace, options) -> int:
    from videozoo.jobs import ray_run

    if args.stall_timeout is not None:
        raise ValueError("--stall-timeout: under --ray, Ray runs and retries the decoding tasks (leave it out)")
    if args.allow_images:
        raise ValueError("--allow-images: not under --ray, whose decoding tasks refuse still images (leave it out)")
    failed = 0
    for entry in ray_run.predict(
        args.videos,
        options,
        model=args.model,
        weights=args.weights,
        views=args.views,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        batch_size=args.batch_size,
        threads=args.threads,
        top_k=args.top_k,
    ):
        failed += "error" in entry
        _print_entry(entry, args)
    return 1 if failed else 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from videozoo.jobs.classify import check_template, entries, parse_labels, zero_shot_engine

    try:
        labels = parse_labels(args.labels, args.labels_file)
        check_template(args.template)
    except (OSError, ValueError) as e:
        print(f"videozoo classify: {e}", file=sys.stderr)
        return 2
    engine = zero_shot_engine(
        args.model,
        labels,
        template=args.template,
        weights=args.weights,
        views=args.views,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        batch_size=args.batch_size,
    )
    print(
        f"videozoo classify: {args.model}, {len(labels)} labels, {engine.plan} views, precision {engine.precision}, "
        f"on {engine.device}",
        file=sys.stderr,
        flush=True,
    )
    failed = 0
    for entry in entries(engine, args.videos, top_k=args.top_k, workers=1 if len(args.videos) > 1 else 0):
        failed += "error" in entry
        _print_entry(entry, args)
    return 1 if failed else 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from videozoo.jobs.embed import embed

    def log(message: str) -> None:
        print(f"videozoo embed: {message}", file=sys.stderr, flush=True)

    summary = embed(
        args.videos,
        args.out,
        model=args.model,
        weights=args.weights,
        window=args.window,
        stride=args.stride,
        labels=args.labels if args.labels_file is None else parse_labels_file(args.labels_file),
        template=args.template,
        views=args.views,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        threads=args.threads,
        resume=args.resume,
        wait=args.wait,
        log=log,
    )
    log(
        f"{summary['rows']} vectors of {summary['dim']} from {summary['videos'] - summary['failed']} of "
        f"{summary['videos']} videos in {summary['out']}"
    )
    return 1 if summary["failed"] else 0


def parse_labels_file(path: str) -> list[str]:
    from videozoo.jobs.classify import parse_labels

    try:
        return parse_labels(labels_file=path)
    except OSError as e:
        raise ValueError(f"--labels-file {path}: {e.strerror or e}") from None


def _cmd_search(args: argparse.Namespace) -> int:
    from videozoo.jobs.embed import search

    hits = search(args.index, args.query, top=args.top, weights=args.weights, device=args.device)
    for hit in hits:
        if args.json:
            print(json.dumps(hit))
        else:
            print(f"{hit['score']:7.4f}  {hit['start']:8.2f} {hit['end']:8.2f}  {hit['video']}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from videozoo.jobs.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        backend=args.backend,
        model=args.model,
        data=args.data,
        out=args.out,
        weights=args.weights,
        views=args.views,
        data_root=args.data_root,
        batch_size=args.batch_size,
        workers=args.workers,
        precision=args.precision,
        device=args.device,
        resume=args.resume,
        save_view_scores=args.save_view_scores,
        limit=args.limit,
        wait=args.wait,
        stall_timeout=args.stall_timeout,
        decoder_threads=args.threads,
    )
    metrics = evaluate(cfg)
    if metrics is not None:
        shown = {k: v for k, v in metrics.items() if k not in ("config", "failures")}
        print(json.dumps(shown, indent=2))
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from videozoo.jobs import dense, features

    ray = _ray_options(args)
    if ray is not None and args.stall_timeout is not None:
        raise ValueError("--stall-timeout: under --ray, Ray runs and retries the decoding tasks (leave it out)")
    if args.tokens and (args.dense or args.preset is not None or ray is not None):
        flag = "--dense" if args.dense else "--preset" if args.preset is not None else "--ray"
        raise ValueError(f"--tokens: pooled-feature runs only; {flag} writes one vector per window or clip")
    is_dense = args.dense or args.preset is not None
    # What both jobs take, then each job's own settings; one dispatch for both, with or without Ray.
    common = {
        "out": args.out,
        "data": args.data,
        "videos": args.videos or None,
        "weights": args.weights,
        "precision": args.precision,
        "device": args.device,
        "batch_size": args.batch_size,
        "resume": args.resume,
        "wait": args.wait,
    }
    cfg = _dense_config(args, ray, common) if is_dense else _pooled_config(args, ray, common)
    if ray is not None:
        from videozoo.jobs import ray_run

        summary = (ray_run.extract_dense if is_dense else ray_run.extract_features)(cfg, ray)
    else:
        summary = (dense.extract_dense if is_dense else features.extract_features)(cfg)
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


def _dense_flags(args: argparse.Namespace) -> dict[str, tuple[str, object]]:
    """The dense settings a --preset sets, by DenseConfig field: (flag, value given)."""
    return {
        "clip_frames": ("--clip-frames", args.clip_frames),
        "stride": ("--stride", args.stride),
        "fps": ("--fps", args.fps),
        "last": ("--last", args.last),
    }


def _pooled_config(args: argparse.Namespace, ray, common: dict):
    from videozoo.jobs.features import FeatureConfig

    if ray is not None and args.workers is not None:
        raise ValueError("--workers: under --ray, decoding runs in Ray tasks over the cluster's CPUs (leave it out)")
    only_dense = [*_dense_flags(args).values(), ("--overwrite", args.overwrite or None), ("--parquet", args.parquet)]
    for flag, value in only_dense:
        if value is not None:
            raise ValueError(f"{flag}: only for dense features (add --dense, or use a --preset)")
    return FeatureConfig(
        backend=args.backend,
        model=args.model or "slow_r50",
        views=args.views,
        format=args.format,
        workers=2 if args.workers is None else args.workers,
        stall_timeout=args.stall_timeout,
        tokens=args.tokens,
        **common,
    )


def _dense_config(args: argparse.Namespace, ray, common: dict):
    from videozoo.jobs.dense import DEFAULT_LAST, DenseConfig, get_preset

    # Settings of the pooled-features job that dense features do not take: refused, not ignored.
    if str(args.views) != "1x1":
        raise ValueError(f"--views {args.views}: dense features take one centre-cropped view per window (1x1)")
    if args.format != "npy":
        raise ValueError(f"--format {args.format}: dense features are written as one .npy per video")
    if args.workers is not None:
        where = "in a Ray task" if ray is not None else "in this process"
        raise ValueError(f"--workers: dense features decode each video once, in order, {where}")
    if args.backend == "onnxruntime":
        raise ValueError("--backend onnxruntime: dense features run the torch model (any clip length)")
    flags = _dense_flags(args)
    if args.preset is not None:
        preset = get_preset(args.preset)
        settings = preset.settings()
        for key, (flag, value) in flags.items():
            if value is not None:
                raise ValueError(f"{flag}: --preset {preset.name} sets it ({settings[key]}); leave one of them out")
        if args.model is not None and args.model != preset.model:
            raise ValueError(f"--model {args.model}: --preset {preset.name} is made with {preset.model}")
    else:
        for key, what in (("clip_frames", "frames per window"), ("stride", "frames between starts")):
            if flags[key][1] is None:
                raise ValueError(f"--dense needs {flags[key][0]} ({what}), or a --preset")
        settings = {key: value for key, (_, value) in flags.items()}
        settings.update(model=args.model or "slow_r50", last=args.last or DEFAULT_LAST)
    return DenseConfig(**settings, **common, preset=args.preset, overwrite=args.overwrite, parquet=bool(args.parquet))


def _cmd_timeline(args: argparse.Namespace) -> int:
    from videozoo.cli.timeline import run_timeline

    return run_timeline(args)


def _cmd_synth(args: argparse.Namespace) -> int:
    from videozoo.data.synth import DEFAULT_CLASSES, make_dataset

    classes = args.classes.split(",") if args.classes else DEFAULT_CLASSES
    info = make_dataset(
        args.out,
        classes=classes,
        videos_per_class=args.videos_per_class,
        seed=args.seed,
        size=(args.size, args.size),
        num_frames=args.frames,
        fps=args.fps,
        val_fraction=args.val_fraction,
        variety=args.variety,
        clutter=args.clutter,
        workers=args.workers,
    )
    print(
        f"wrote {info.num_train} training and {info.num_val} validation videos to {info.root} "
        "(train.txt, val.txt, classes.txt)"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from videozoo.train import train
    from videozoo.train.config import config_from_args

    result = train(config_from_args(args))
    # Under torchrun every process returns; the first one speaks for the run.
    if os.environ.get("RANK", "0") == "0":
        print(result.summary())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import time

    from videozoo.export import export

    t0 = time.perf_counter()
    path = export(
        args.model,
        format=args.format,
        out=args.out,
        weights=args.weights,
        batch=args.batch,
        opset=args.opset,
        precision=args.precision,
    )
    size = path.stat().st_size / 2**20
    batch = "dynamic batch" if args.batch == "dynamic" else f"batch {args.batch}"
    print(
        f"{args.model} -> {path} ({args.format}, {batch}, {args.precision}, {size:.1f} MiB, "
        f"{time.perf_counter() - t0:.1f} s)"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from videozoo.cli.demo import run_demo

    return run_demo(args.out, quick=args.quick)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            f"serving needs the serve extra ({e.name} is missing): pip install 'videozoo[serve]'"
        ) from None
    from videozoo.models.registry import get_spec
    from videozoo.serve.config import DEFAULT_MODEL, DEFAULT_WEIGHTS, ServeConfig, ServedModel
    from videozoo.serve.run import serve

    names = args.model or [DEFAULT_MODEL]
    weights = args.weights or [DEFAULT_WEIGHTS]
    if len(weights) not in (1, len(names)):
        raise ValueError(
            f"--weights: give it once (for every model) or once per --model "
            f"({len(names)} models, {len(weights)} --weights)"
        )
    weights = weights * len(names) if len(weights) == 1 else weights
    for name in names:
        get_spec(name)  # an unknown name fails now, with the registry's message
    config = ServeConfig(
        models=tuple(ServedModel(n, w) for n, w in zip(names, weights, strict=True)),
        workers=args.workers,
        max_queue=args.max_queue,
        max_upload_mb=args.max_upload_mb,
        precision=args.precision,
        device=args.device,
        views=str(args.views),
        threads=args.compute_threads,
        decoder_threads=args.threads,
    )
    return serve(
        config,
        host=args.host,
        port=args.port,
        shutdown_timeout=args.shutdown_timeout,
        log_level=args.log_level,
        abandon_running=True,
    )


def _weights_arg(value: str) -> str | None:
    """Every --weights flag reads its value here: ``none``/``random`` -> None (random init)."""
    from videozoo.models.spec import weights_word

    return weights_word(value)  # type: ignore[return-value]


def _weights_help(more: str = "") -> str:
    from videozoo.models.spec import WEIGHTS_HELP

    return f"{WEIGHTS_HELP}; {more}" if more else f"{WEIGHTS_HELP} (default: default)"


def _views_arg(value: str):
    from videozoo.data.plan import ViewPlan, ViewPlanError

    try:
        return ViewPlan.parse(value)
    except ViewPlanError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _nonnegative_int(value: str) -> int:
    if value.strip() in ("0", "+0", "-0"):
        return 0
    try:
        return _positive_int(value)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(str(e).replace("at least 1", "0 or more")) from None


def _model_arg(value: str) -> str:
    from videozoo.models.registry import get_spec

    try:
        get_spec(value)
    except KeyError as e:
        raise argparse.ArgumentTypeError(e.args[0]) from None
    return value


def _port_arg(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free port), got {n}")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number more than 0, got {value}")
    return x


def _positive_fps(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of frames per second, got {value!r}") from None
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of frames per second, got {value}")
    return x


def _positive_seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return x


def _seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or a positive number of seconds, got {value}")
    return x


def _add_stall_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stall-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="a decoding worker that makes no progress this long is stopped, its stack printed and its "
        f"video recorded as an error; the other videos go on (default: {DEFAULT_STALL_SECONDS:g})",
    )


def _add_backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime", "openvino"],
        help="what runs the model: torch (eager), onnxruntime (--weights FILE.onnx from "
        "`videozoo export`), openvino (converted once and cached; the openvino extra), "
        "auto: onnxruntime for a .onnx file, else torch (default)",
    )


def _add_model_args(p: argparse.ArgumentParser, *, device: str = "cpu") -> None:
    p.add_argument("--model", type=_model_arg, default="slow_r50", help="registry name (see `videozoo models`)")
    p.add_argument(
        "--weights",
        type=_weights_arg,
        default="default",
        help=_weights_help(),
    )
    _add_views_arg(p)
    _add_precision_arg(p)
    _add_device_arg(p, device)


def _add_views_arg(p: argparse.ArgumentParser, before: str = "") -> None:
    p.add_argument(
        "--views",
        type=_views_arg,
        default="1x1",
        help=f"{before}CLIPSxCROPS: 1x1 (centred clip, centre crop; the default), 10x3, ..., or published "
        "(the model's published test protocol)",
    )


def _add_precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 where the hardware runs it natively, else fp32 (default)",
    )


def _add_device_arg(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    p.add_argument("--device", default=default, help=f"cpu, cuda, cuda:N or auto (default {default})")


def _add_threads_arg(p: argparse.ArgumentParser, more: str = "") -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help=f"decoder threads per video{more or ' (default: FFmpeg picks, one per core)'}",
    )


def _add_workers_arg(p: argparse.ArgumentParser, *, default: int | None, more: str = "") -> None:
    p.add_argument(
        "--workers",
        "--num-workers",
        dest="workers",
        type=_nonnegative_int,
        default=default,
        help=f"decoding worker processes (0: decode in this one){more}",
    )


def _add_ray_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run over a Ray cluster (the ray extra): decoding in Ray tasks, the model in a pool of actors; "
        "ADDRESS: the cluster's (ray://HOST:10001, HOST:6379 or auto); none: a local Ray for this run",
    )
    p.add_argument(
        "--ray-actors",
        type=_positive_int,
        default=None,
        metavar="N",
        help="engine actors under --ray (default: one per GPU of the cluster, else one)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videozoo", description="Pretrained video action recognition models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the models with their computed and published figures")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser(
        "doctor",
        help="what is installed, what this machine can do, and a self-test (decode, a model); exit 1 on a failure",
    )
    p.add_argument("--json", action="store_true", help="the report as JSON (for bug reports)")
    p.add_argument(
        "--step-timeout",
        type=_positive_seconds,
        default=20.0,
        metavar="SECONDS",
        help="time limit of each self-test step; a step still running then is reported as hung (default 20)",
    )
    p.add_argument("--no-self-test", action="store_true", help="the report only: no video written, decoded or run")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("convert", help="convert a checkpoint (e.g. a Caffe2 .pkl) to .pth or .safetensors")
    p.add_argument("input", help="checkpoint in any supported format")
    p.add_argument("output", help="OUT.pth or OUT.safetensors")
    p.add_argument("--model", type=_model_arg, help="registry name (inferred from the checkpoint's keys if omitted)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("predict", help="top-k actions of videos")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    _add_model_args(p)
    p.add_argument("--top-k", type=_positive_int, default=5)
    _add_threads_arg(p)
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="views per forward pass (default: chosen from the clip size and free memory)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    p.add_argument(
        "--allow-images",
        action="store_true",
        help="score a still image (PNG, JPEG, BMP, WebP, TIFF, a one-picture GIF) as a one-frame clip; "
        "by default it is refused, as a picture holds no motion (animated GIFs are videos either way)",
    )
    _add_backend_arg(p)
    _add_stall_arg(p)
    _add_ray_args(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("classify", help="top-k over labels given as text (zero-shot, video-text models)")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    _add_model_args(p)
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help='comma-separated labels, e.g. "person falls,dog runs,cooking"')
    labels.add_argument("--labels-file", help="a text file of one label per line")
    p.add_argument(
        "--template", default="a video of {}.", help='prompt for each label, {} replaced (default "a video of {}.")'
    )
    p.add_argument("--top-k", type=_positive_int, default=5)
    _add_threads_arg(p)
    p.add_argument("--batch-size", type=_positive_int, default=None, help="views per forward pass")
    p.add_argument("--json", action="store_true", help="one JSON object per video (as predict --json)")
    p.set_defaults(func=_cmd_classify, model="xclip_b16_zero_shot")

    p = sub.add_parser("embed", help="an index of video embeddings, one per window, for text search")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    _add_model_args(p)
    p.add_argument("--out", required=True, metavar="INDEX", help="the index folder (vectors.npy, rows.json)")
    p.add_argument(
        "--window", type=_positive_seconds, default=None, help="seconds per window (default: the model's clip duration)"
    )
    p.add_argument(
        "--stride",
        type=_positive_seconds,
        default=None,
        help="seconds between window starts (default: half the window)",
    )
    texts = p.add_mutually_exclusive_group()
    texts.add_argument("--labels", help="texts to embed into the index too (comma-separated): texts.npy")
    texts.add_argument("--labels-file", help="texts to embed into the index too, one per line")
    p.add_argument(
        "--template",
        default="a video of {}.",
        help='prompt for each label and query, {} replaced (default "a video of {}.")',
    )
    p.add_argument("--threads", type=_positive_int, default=None, help="decoder threads")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="views per forward pass")
    p.add_argument("--resume", action="store_true", help="keep the videos already embedded with the same settings")
    p.add_argument("--wait", action="store_true", help="if another run is writing in --out, wait for it to end")
    p.set_defaults(func=_cmd_embed, model="xclip_b16_zero_shot")

    p = sub.add_parser("search", help="the windows of an embedded index closest to a text query")
    p.add_argument("index", metavar="INDEX", help="a folder written by videozoo embed")
    p.add_argument("query", help='the text to search for, e.g. "a person falls"')
    p.add_argument("--top", type=_positive_int, default=10, help="how many windows to list (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per window")
    p.add_argument(
        "--weights",
        type=_weights_arg,
        default=None,
        help=_weights_help("weights to embed the query with (default: the index's)"),
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, auto")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("evaluate", help="accuracy on a labelled dataset (resumable, torchrun-aware)")
    _add_model_args(p, device="auto")
    _add_backend_arg(p)
    p.add_argument("--data", required=True, help="Kinetics CSV, folder per class, or `path label` list")
    p.add_argument("--data-root", help="folder of the videos of a Kinetics CSV (default: the CSV's folder)")
    p.add_argument("--out", required=True, help="output folder (predictions, metrics.json, confusion matrix)")
    p.add_argument("--resume", action="store_true", help="continue from the predictions already in --out")
    p.add_argument("--wait", action="store_true", help="if another run is writing in --out, wait for it to end")
    _add_workers_arg(p, default=2)
    _add_threads_arg(p)
    p.add_argument("--batch-size", type=_positive_int, default=None, help="views per forward pass")
    p.add_argument("--save-view-scores", action="store_true", help="store every view's scores")
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate the first N videos only")
    _add_stall_arg(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("features", help="pooled features per clip and per video (resumable)")
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video files (or use --data)")
    _add_model_args(p)
    _add_backend_arg(p)
    p.add_argument("--data", help="dataset spec instead of video files")
    p.add_argument("--out", required=True, help="output folder (one feature file per video, an index)")
    p.add_argument("--format", default="npy", choices=["npy", "safetensors"])
    _add_workers_arg(p, default=None, more=" (default 2)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="views (dense: windows) per forward pass")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--wait", action="store_true", help="if another run is writing in --out, wait for it to end")
    p.add_argument(
        "--tokens",
        action="store_true",
        help="the encoder's tokens (N x D per clip) instead of the pooled features (V-JEPA 2 models)",
    )
    _add_stall_arg(p)
    _add_ray_args(p)
    dense = p.add_argument_group("dense features (docs/features.md)")
    dense.add_argument(
        "--dense", action="store_true", help="one vector per window of --clip-frames frames every --stride frames"
    )
    dense.add_argument("--clip-frames", type=_positive_int, default=None, help="frames per window")
    dense.add_argument("--stride", type=_positive_int, default=None, help="frames from one window's start to the next")
    dense.add_argument(
        "--fps", type=_positive_fps, default=None, help="resample each video to this rate first (default: its own)"
    )
    dense.add_argument(
        "--last",
        choices=["pad", "drop"],
        default=None,
        help="a last window reaching past the end: pad (repeat the last frame; the default) or drop",
    )
    dense.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of a run with other settings in --out (the same settings: finished videos are kept)",
    )
    dense.add_argument(
        "--preset",
        default=None,
        help="a published layout: video-features-i3d, actionformer-thumos-i3d, opentad-slowfast-r50, videomaev2-tad",
    )
    dense.add_argument(
        "--parquet",
        action="store_const",
        const=True,
        default=None,
        help="also write the run's features as one Parquet table, OUT/features.parquet (needs pyarrow)",
    )
    # The model comes from --preset where one is given (slow_r50 otherwise).
    p.set_defaults(func=_cmd_features, model=None)

    p = sub.add_parser("timeline", help="actions over time in a long video or a live stream (JSON, CSV, plot)")
    p.add_argument("video", metavar="VIDEO", help="a video file, - for a stream on standard input, a URL or a camera")
    _add_model_args(p)
    p.add_argument(
        "--window", type=_positive_seconds, default=None, help="seconds per window (default: the model's clip duration)"
    )
    p.add_argument(
        "--stride",
        type=_positive_seconds,
        default=None,
        help="seconds between window starts (default: half the window)",
    )
    p.add_argument("--top-k", type=_positive_int, default=5, help="classes listed per window")
    p.add_argument(
        "--smooth",
        type=_positive_int,
        default=3,
        help="windows in the centred moving average before segmenting (1: none)",
    )
    p.add_argument(
        "--min-segment",
        type=_seconds,
        default=None,
        help="seconds under which a segment is absorbed by its neighbours (default: two windows)",
    )
    p.add_argument("--out", default="timeline-output", help="output folder (timeline.json, .csv, .png)")
    p.add_argument("--overlay", action="store_true", help="also write overlay.mp4 (files only)")
    _add_threads_arg(p)
    p.add_argument("--batch-size", type=_positive_int, default=None, help="views per forward pass")
    p.add_argument("--format", default=None, help="FFmpeg demuxer of the input (e.g. mpegts, h264), if not probed")
    zero_shot = p.add_argument_group("zero-shot (video-text models such as xclip_b16_zero_shot; docs/zero_shot.md)")
    labels = zero_shot.add_mutually_exclusive_group()
    labels.add_argument("--labels", help='the classes as comma-separated text, e.g. "person falls,forklift reverses"')
    labels.add_argument("--labels-file", help="the classes as a text file of one label per line")
    zero_shot.add_argument(
        "--template", default=None, help='prompt for each label, {} replaced (default "a video of {}.")'
    )
    zero_shot.add_argument(
        "--none-threshold",
        type=float,
        default=None,
        metavar="P",
        help='label windows and segments "none" where no label\'s probability reaches P (above 1/labels, under 1)',
    )
    p.set_defaults(func=_cmd_timeline)

    p = sub.add_parser("synth", help="write a synthetic motion dataset (H.264 MP4)")
    p.add_argument("--out", required=True, help="output folder (the videos, train.txt, val.txt, classes.txt)")
    p.add_argument("--classes", help="comma-separated motion classes (default: all 8)")
    p.add_argument("--videos-per-class", type=_positive_int, default=24)
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--size", type=_positive_int, default=112, help="frame height and width")
    p.add_argument("--frames", type=_positive_int, default=32)
    p.add_argument("--fps", type=float, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--variety",
        default="classic",
        choices=["classic", "wide"],
        help="classic: one object, one look; wide: 1-3 objects of many shapes and textures, several "
        "kinds of background, camera shake, changing brightness, more speeds and sizes",
    )
    p.add_argument(
        "--clutter",
        type=float,
        default=1.0,
        help="scale of background texture, drift and sensor noise (0: flat background, clean frames)",
    )
    p.add_argument("--workers", type=_nonnegative_int, default=1, help="processes writing videos (default 1)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("serve", help="an HTTP API and a web page for predictions (the serve extra)")
    p.add_argument(
        "--model",
        action="append",
        metavar="M",
        help="a model to serve, kept warm; repeat for several (default: motion_tiny)",
    )
    p.add_argument(
        "--weights",
        action="append",
        type=_weights_arg,
        metavar="W",
        help=_weights_help("default: default; once for every model or once per --model, in order"),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port_arg, default=8000, help="port (0: any free port; the chosen one is printed)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="inference workers, each with one replica of every model (default 1)",
    )
    p.add_argument(
        "--max-queue",
        type=_nonnegative_int,
        default=16,
        help="requests waiting beyond the running ones; more are refused with 503 and Retry-After",
    )
    p.add_argument("--max-upload-mb", type=_positive_float, default=200.0, help="largest upload in MiB (default 200)")
    _add_views_arg(p, "the views of a request that sends no `views` field: ")
    _add_precision_arg(p)
    _add_device_arg(p)
    _add_threads_arg(p, " (default: --compute-threads)")
    p.add_argument(
        "--compute-threads",
        type=_positive_int,
        default=None,
        help="the model's CPU threads per worker (default: the cores shared among the workers)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_positive_float,
        default=5.0,
        help="seconds running requests get to finish on SIGTERM / Ctrl-C (default 5)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_cmd_serve)

    from videozoo.train.config import add_cli_arguments

    p = sub.add_parser("train", help="train or fine-tune (resumable, torchrun-aware)")
    add_cli_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="write a model as an ONNX file or a torch.export program (.pt2)")
    p.add_argument("model", help="registry name (see `videozoo models`)")
    p.add_argument(
        "--weights",
        type=_weights_arg,
        default="default",
        help=_weights_help(),
    )
    p.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "exported-program"],
        help="onnx (onnxruntime and other ONNX runtimes; the default) or exported-program (torch.export .pt2)",
    )
    p.add_argument("--out", help="output file (default: MODEL.onnx or MODEL.pt2)")
    p.add_argument("--batch", default="dynamic", help="dynamic (any batch; the default) or a fixed number of clips")
    p.add_argument("--opset", type=_positive_int, default=None, help="ONNX opset (18-23; default: the exporter's)")
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "fp16"], help="fp32 (default) or fp16 (GPU runtimes)"
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("demo", help="offline end-to-end demo: synthesise, fine-tune, evaluate, predict, report")
    p.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p.set_defaults(func=_cmd_demo)

    return parser


# Commands that run models over many large batches.
_HEAVY = {"predict", "evaluate", "features", "timeline", "train", "demo", "serve", "embed"}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Warnings reach a command-line user as one plain line, not a source location.
    print(f"videozoo: warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    if args.command in _HEAVY:
        from videozoo.engine.optimize import keep_freed_memory

        keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"videozoo {args.command}: error: {msg}", file=sys.stderr)
        from videozoo.jobs.rundir import exit_status

        return exit_status(e)


if __name__ == "__main__":
    sys.exit(main())
