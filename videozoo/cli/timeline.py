"""`videozoo timeline`: run a timeline, print live windows, write the files whatever ends the run.

Exit status: 0 when the input was read to its end (or a live stream was stopped with Ctrl-C or
SIGTERM); 1 when the run failed (the input cannot be opened, or it broke off or was damaged
part-way: the files then hold what was computed); 2 for a usage error; 128 + the signal's number
when a file's run was stopped early (its files are written first).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path


def _say(kind: str, message: str) -> None:
    print(f"videozoo timeline: {kind}: {message}", file=sys.stderr, flush=True)


def run_timeline(args: argparse.Namespace) -> int:
    from videozoo.io import DamagedVideoWarning, VideoDecodeError
    from videozoo.io.source import source_kind
    from videozoo.jobs.timeline import TimelineRun, make_engine

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        _say("error", f"--out {out}: exists and is not a folder")
        return 2
    try:
        kind = source_kind(args.video)
    except VideoDecodeError as e:
        _say("error", str(e))
        return 1
    if args.overlay and kind not in ("file", "folder"):
        _say("error", f"--overlay needs a file: {args.video} is a stream ({kind}), which cannot be read a second time")
        return 2
    labels = None
    if args.labels is not None or args.labels_file is not None:
        from videozoo.jobs.classify import check_template, parse_labels

        try:
            labels = parse_labels(args.labels, args.labels_file)
            if args.template is not None:
                check_template(args.template)
        except (OSError, ValueError) as e:
            _say("error", f"{'--labels-file' if args.labels_file is not None else '--labels'}: {e}")
            return 2
    if args.none_threshold is not None:
        from videozoo.jobs.timeline import check_none_threshold

        try:
            # Checked before the model loads; the class count of a classifier is known only then.
            check_none_threshold(args.none_threshold, len(labels) if labels else 0)
        except ValueError as e:
            _say("error", str(e))
            return 2
    engine = make_engine(
        args.model,
        weights=args.weights,
        views=args.views,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        labels=labels,
        template=args.template,
    )
    try:
        run = TimelineRun(
            args.video,
            engine=engine,
            window=args.window,
            stride=args.stride,
            top_k=args.top_k,
            threads=args.threads,
            format=args.format,
            none_threshold=args.none_threshold,
        )
    except VideoDecodeError as e:
        _say("error", str(e))
        return 1
    what = f"{args.model} over {len(labels)} labels" if labels else args.model
    print(
        f"videozoo timeline: {what}, window {run.plan.window:.3f} s, stride {run.plan.stride:.3f} s, "
        f"{engine.plan} views, precision {engine.precision}, {engine.batch_size} views per forward pass, "
        f"on {engine.device}",
        file=sys.stderr,
        flush=True,
    )

    caught: list[int] = []

    def on_signal(signum, _frame) -> None:
        if caught:  # a second signal: stop now, still writing what was scored
            raise KeyboardInterrupt
        caught.append(signum)
        run.stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with warnings.catch_warnings():
            # A file that ends before its declared duration is reported once, as the run's error.
            warnings.filterwarnings(
                "ignore", message=r".*\(stream ended at .* before the declared duration", category=DamagedVideoWarning
            )
            try:
                printing = run.live
                for window in run:
                    if printing:
                        try:
                            print(json.dumps(window.to_json()), flush=True)
                        except BrokenPipeError:  # the reader went away; the files still get written
                            printing = False
                            sys.stdout = open(os.devnull, "w")
            except KeyboardInterrupt:
                run.stopped = run.stopped or "SIGINT"
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        run.close()

    result = run.result(smooth=args.smooth, min_segment=args.min_segment)
    paths = result.save(out)
    if args.overlay and result.windows and result.stopped is None:
        from videozoo.jobs.timeline.overlay import write_overlay

        paths["overlay"] = write_overlay(result, args.video, out / "overlay.mp4", threads=args.threads)

    stream = sys.stderr if run.live else sys.stdout
    for s in result.segments:
        print(f"{s.start:9.2f} {s.end:9.2f}  {s.label}  ({s.score:.0%})", file=stream)
    rate = result.duration / result.seconds if result.seconds > 0 else 0.0
    print(
        f"videozoo timeline: {len(result.windows)} windows, {len(result.segments)} segments over "
        f"{result.duration:.2f} s of video in {result.seconds:.1f} s ({rate:.1f}x real time); wrote "
        + ", ".join(str(p) for p in paths.values()),
        file=sys.stderr,
        flush=True,
    )
    if result.short:
        _say(
            "note",
            f"{args.video} is shorter than one window ({result.duration:.2f} s < {result.window:.2f} s): "
            "scored once, its frames repeated to fill the clip",
        )
    if result.error is not None:
        _say("error", result.error)
        return 1
    if result.stopped is not None:
        _say("note", f"stopped by {result.stopped} after {len(result.windows)} windows; the files hold them")
        if not run.live:
            number = caught[0] if caught else signal.SIGINT
            return 128 + int(number)
    if not result.windows:
        _say("error", f"{args.video}: no window could be scored (no frame decoded)")
        return 1
    return 0
