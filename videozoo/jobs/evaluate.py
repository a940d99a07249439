"""Evaluating a model on a labelled video list: the I3D seed's clip mode (1x1) and video mode (10x3).

Decoding and transforms run in DataLoader workers while the main process runs the model. Every
finished video is appended to `predictions.jsonl` at once, so a killed run loses nothing:
`resume=True` skips the videos already there, after checking against `manifest.json` that they
came from the same model, weights, views, precision and data (videozoo.jobs.rundir); the output
folder is locked while a run writes in it. A video that fails to decode is recorded with its
reason and the run goes on. Under torch.distributed (torchrun) each process takes every
world-th video (no padding, so no video is evaluated twice), writes its own part file, and rank 0
merges the parts and computes the metrics, which equal those of one process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from videozoo.data.datasets import VideoList, load_video_list
from videozoo.data.plan import ViewPlan
from videozoo.engine import Engine, resolve_device
from videozoo.jobs.metrics import plot_confusion, summarize
from videozoo.jobs.records import RecordWriter, read_records
from videozoo.jobs.rundir import (
    RunError,
    RunLock,
    check_resume,
    data_sha256,
    identity,
    prepare_out,
    write_manifest,
    write_text_atomic,
)
from videozoo.models.registry import get_spec
from videozoo.models.spec import weights_word

log = logging.getLogger("videozoo.jobs.evaluate")


@dataclass
class EvalConfig:
    model: str
    data: str
    out: str
    weights: str | None = "kinetics400"
    views: ViewPlan = ViewPlan(1, 1)
    data_root: str | None = None
    batch_size: int | None = None  # views per forward pass; default: chosen by the engine
    workers: int = 2
    precision: str = "auto"
    device: str = "auto"
    backend: str = "auto"  # torch, onnxruntime (weights: a .onnx file) or auto
    resume: bool = False
    save_view_scores: bool = False
    decoder_threads: int | None = None
    limit: int | None = None  # evaluate only the first N videos
    wait: bool = False  # wait for another run holding `out` instead of stopping
    stall_timeout: float | None = None  # seconds a decoding worker may make no progress (None: the default)

    def __post_init__(self) -> None:
        self.views = ViewPlan.parse(self.views)
        self.weights = weights_word(self.weights)  # "none" is None, as on the command line

    def to_dict(self) -> dict:
        """The settings the results depend on (not how this invocation was started: resume, wait)."""
        d = {**dataclasses.asdict(self), "views": str(self.views)}
        return {k: v for k, v in d.items() if k not in ("resume", "wait", "stall_timeout")}


# -- distributed helpers ------------------------------------------------------------------------------


def _dist_setup(device: str) -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# -- records -------------------------------------------------------------------------------------------


def _record(index: int, videos: VideoList, pred=None, error: str | None = None, save_view_scores: bool = False) -> dict:
    item = videos.items[index]
    rec: dict = {"index": index, "video": item.path, "label": item.label, "label_name": item.label_name}
    if error is not None:
        rec["error"] = error
        return rec
    rec["error"] = None
    rec["top5"] = pred.top_k(5)
    scores = pred.scores.numpy()
    view_scores = pred.view_scores.numpy()
    rec["pred"] = int(scores.argmax())
    # Enough to recompute every metric after a resume without the full score vectors.
    rec["video_top5"] = [int(i) for i in np.argsort(-scores)[:5]]
    rec["view_top5"] = [[int(i) for i in np.argsort(-v)[:5]] for v in view_scores]
    rec["seconds"] = round(pred.seconds, 4)
    rec.update(pred.info)
    if save_view_scores:
        rec["view_scores"] = view_scores.round(6).tolist()
    return rec


# -- the run -------------------------------------------------------------------------------------------


def evaluate(cfg: EvalConfig) -> dict | None:
    """Run the evaluation described by `cfg`; returns the metrics (on rank 0; None elsewhere)."""
    get_spec(cfg.model)  # an unknown name fails before anything is written
    device = str(resolve_device(cfg.device))
    rank, world = _dist_setup(device)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % max(torch.cuda.device_count(), 1)}"
    out = Path(cfg.out)
    lock = None
    if rank == 0:
        prepare_out(out)
        lock = RunLock(out, wait=cfg.wait).acquire()
    try:
        _barrier()
        return _evaluate(cfg, out, device, rank, world)
    finally:
        if lock is not None:
            lock.release()


def _evaluate(cfg: EvalConfig, out: Path, device: str, rank: int, world: int) -> dict | None:
    if cfg.resume and cfg.weights is None:
        raise ValueError(
            "--resume with random weights (--weights none): each run draws other weights, so the "
            "records would not belong together; save the model (videozoo.save_model) and pass the file"
        )
    engine = Engine.build(
        cfg.model,
        weights=cfg.weights,
        backend=cfg.backend,
        views=cfg.views,
        device=device,
        precision=cfg.precision,
        batch_size=cfg.batch_size,
        threads=cfg.decoder_threads,
    )
    classes = engine.class_names or [str(i) for i in range(engine.model.num_classes)]
    videos = load_video_list(cfg.data, classes=classes, root=cfg.data_root)
    total = len(videos) if cfg.limit is None else min(cfg.limit, len(videos))
    ident = identity(
        model=cfg.model,
        weights=cfg.weights,
        data_sha=data_sha256(cfg.data, root=cfg.data_root),
        views=str(cfg.views),
        precision=engine.precision.name,
        save_view_scores=cfg.save_view_scores,
    )

    final = out / "predictions.jsonl"
    part = out / (f"predictions.rank{rank}.jsonl" if world > 1 else "predictions.jsonl")
    if rank == 0:
        started = final.exists() or any(out.glob("predictions.rank*.jsonl"))
        if cfg.resume and started:
            check_resume(out, ident, job="evaluate")
        else:
            for stale in [final, *out.glob("predictions.rank*.jsonl"), out / "metrics.json"]:
                stale.unlink(missing_ok=True)
            write_manifest(out, ident, job="evaluate", about={"weights": cfg.weights, "data": cfg.data})
    _barrier()
    done = (
        {r["index"] for p in [final, *out.glob("predictions.rank*.jsonl")] for r in read_records(p)}
        if cfg.resume
        else set()
    )
    todo = [i for i in range(rank, total, world) if i not in done]
    if rank == 0:
        settings = {**cfg.to_dict(), "world_size": world, "device": device, "precision_used": engine.precision.name}
        _write_output(out / "config.json", json.dumps(settings, indent=2))
        print(
            f"evaluate: {cfg.model} {engine.plan} views, precision {engine.precision}, "
            f"{engine.batch_size} views per forward pass, on {device}",
            file=sys.stderr,
            flush=True,
        )

    progress = _Progress(len(todo), enabled=rank == 0)
    with RecordWriter(part) as writer:
        for result in engine.map(
            [videos.items[i].path for i in todo], workers=cfg.workers, indices=todo, stall_timeout=cfg.stall_timeout
        ):
            if result.error is not None:
                rec = _record(result.index, videos, error=result.error)
                log.warning("failed: %s", result.error)
            else:
                rec = _record(result.index, videos, result.prediction, save_view_scores=cfg.save_view_scores)
            try:
                writer.write(rec)
            except OSError as e:
                raise RunError(
                    f"{part}: cannot write ({e.strerror or e}) after {writer.written} of the {len(todo)} videos "
                    "of this run; the finished records are kept: free space and continue with --resume"
                ) from e
            progress.step()
    progress.close()

    _barrier()
    if rank != 0:
        return None
    records = {r["index"]: r for p in [final, *sorted(out.glob("predictions.rank*.jsonl"))] for r in read_records(p)}
    merged = [records[i] for i in sorted(records) if i < total]
    _write_output(final, "".join(json.dumps(r) + "\n" for r in merged))
    for p in out.glob("predictions.rank*.jsonl"):
        p.unlink()
    metrics, cm = summarize(merged, len(classes))
    metrics.update(
        {
            "model": cfg.model,
            "weights": cfg.weights,
            "views": str(cfg.views),
            "precision": engine.precision.name,
            "world_size": world,
        }
    )
    if videos.skipped_rows:
        metrics["skipped_rows"] = videos.skipped_rows
    metrics["config"] = cfg.to_dict()
    _write_output(out / "metrics.json", json.dumps(metrics, indent=2))
    if cm is not None:
        try:
            plot_confusion(cm, classes, out / "confusion_matrix.png", title=f"{cfg.model} {cfg.views} (video level)")
        except ImportError:
            log.warning("matplotlib is not installed: no confusion-matrix PNG")
        except OSError as e:
            raise RunError(
                f"{out / 'confusion_matrix.png'}: cannot write ({e.strerror or e}); metrics.json is written"
            ) from e
    return metrics


def _write_output(path: Path, text: str) -> None:
    """Write a whole output file atomically; a failure keeps the records and says how to go on."""
    try:
        write_text_atomic(path, text)
    except OSError as e:
        raise RunError(
            f"{path}: cannot write ({e.strerror or e}); the finished records are kept: "
            "free space and continue with --resume"
        ) from e


class _Progress:
    """A tqdm bar on a terminal; a log line every few videos otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.n, self.t0 = total, enabled, 0, time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="video", file=sys.stderr)

    def step(self) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and (self.n % 10 == 0 or self.n == self.total):
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            eta = (self.total - self.n) / rate if rate else 0
            print(
                f"evaluate: {self.n}/{self.total} videos, {rate:.2f} videos/s, ETA {eta:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
