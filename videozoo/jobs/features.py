"""Extracting pooled features (the classifier's input) per clip and per video.

Each finished video is written at once, atomically, to `parts/<index>.npy` (its views' features,
(V, D)) and a line of `index.jsonl`, so a killed run resumes where it stopped. At the end the
parts are gathered into `clip_features.<fmt>` (all views, in video order), `video_features.<fmt>`
(the mean over each video's views) and `index.json`, which maps rows to videos and clip times.
With `tokens` (models that expose their encoder's tokens: V-JEPA 2) each view's row is the
encoder's (N, D) tokens instead, so the arrays are (rows, N, D).
As in evaluation, the output folder is locked while a run writes, and a resumption is checked
against `manifest.json` (videozoo.jobs.rundir); every output file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videozoo.data.datasets import VideoItem, VideoList, load_video_list
from videozoo.data.plan import ViewPlan
from videozoo.engine import Engine
from videozoo.engine.views import VideoViews
from videozoo.jobs.records import RecordWriter, read_records, repair_tail
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


@dataclass
class FeatureConfig:
    model: str
    out: str
    data: str | None = None
    videos: list[str] | None = None
    weights: str | None = "kinetics400"
    views: ViewPlan = ViewPlan(1, 1)
    format: str = "npy"  # "npy" | "safetensors"
    workers: int = 2
    batch_size: int | None = None
    precision: str = "auto"
    device: str = "cpu"
    backend: str = "auto"  # torch, onnxruntime (weights: a .onnx file) or auto
    resume: bool = False
    wait: bool = False  # wait for another run holding `out` instead of stopping
    stall_timeout: float | None = None  # seconds a decoding worker may make no progress (None: the default)
    tokens: bool = False  # the encoder's tokens (V, N, D) per view instead of the pooled features (V-JEPA 2)

    def __post_init__(self) -> None:
        self.views = ViewPlan.parse(self.views)
        self.weights = weights_word(self.weights)  # "none" is None, as on the command line

    def to_dict(self) -> dict:
        """The settings the features depend on (not how this invocation was started: resume, wait)."""
        d = {**dataclasses.asdict(self), "views": str(self.views)}
        return {k: v for k, v in d.items() if k not in ("resume", "wait", "stall_timeout")}


def _video_list(cfg: FeatureConfig, classes: list[str] | None) -> VideoList:
    if cfg.data:
        return load_video_list(cfg.data, classes=classes)
    if not cfg.videos:
        raise ValueError("give a dataset spec (--data) or video files")
    return VideoList([VideoItem(str(v), None) for v in cfg.videos], classes or [], "command line")


def extract_features(cfg: FeatureConfig) -> dict:
    check_config(cfg)
    out = prepare_out(cfg.out)
    with RunLock(out, wait=cfg.wait):
        return _extract(cfg, out)


def check_config(cfg: FeatureConfig) -> None:
    """Every flag checked before anything is loaded or written."""
    if cfg.format not in ("npy", "safetensors"):
        raise ValueError(f"unknown feature format {cfg.format!r}: use npy or safetensors")
    get_spec(cfg.model)  # an unknown name fails before anything is written
    if not cfg.data and not cfg.videos:
        raise ValueError("give a dataset spec (--data) or video files")
    if cfg.tokens:
        spec = get_spec(cfg.model)
        if not hasattr(spec.cls, "forward_tokens"):
            raise ValueError(f"--tokens: {cfg.model} has no encoder tokens to write (the V-JEPA 2 models have)")
        if cfg.backend not in ("auto", "torch"):
            raise ValueError(f"--tokens: the encoder's tokens are computed by the torch backend, not {cfg.backend}")
    if cfg.resume and cfg.weights is None:
        raise ValueError(
            "--resume with random weights (--weights none): each run draws other weights, so the "
            "features would not belong together; save the model (videozoo.save_model) and pass the file"
        )


def _extract(cfg: FeatureConfig, out: Path) -> dict:
    engine = build_engine(cfg)
    run = open_run(cfg, out, engine)
    with RecordWriter(run.index_path) as index:
        for result in engine.map(
            [run.videos.items[i].path for i in run.todo],
            workers=cfg.workers,
            output="tokens" if cfg.tokens else "features",
            indices=run.todo,
            stall_timeout=cfg.stall_timeout,
        ):
            if result.error is None:
                write_video(run, index, result.index, result.output.numpy(), clip_records(result.loaded), None)
            else:
                write_video(run, index, result.index, None, None, result.error)
    return run.gather()


def build_engine(cfg: FeatureConfig, **overrides: Any) -> Engine:
    """The engine of the run (``overrides``: device or precision where the model runs elsewhere)."""
    options: dict[str, Any] = {"device": cfg.device, "precision": cfg.precision, **overrides}
    # Tokens are an output of the eager model only (no exported graph or OpenVINO model has them).
    backend = "torch" if cfg.tokens else cfg.backend
    return Engine.build(
        cfg.model, weights=cfg.weights, backend=backend, views=cfg.views, batch_size=cfg.batch_size, **options
    )


def clip_records(loaded: VideoViews) -> list[dict]:
    """Each view's clip as the index records it: its window in seconds and its crop."""
    return [
        {"start_sec": round(w.start_sec, 6), "end_sec": round(w.end_sec, 6), "crop": c}
        for w in loaded.windows
        for c in range(loaded.crops)
    ]


@dataclass
class FeatureRun:
    """A run's output folder, checked and prepared: the videos and those still to compute."""

    cfg: FeatureConfig
    out: Path
    videos: VideoList
    todo: list[int]

    @property
    def index_path(self) -> Path:
        return self.out / "index.jsonl"

    @property
    def parts(self) -> Path:
        return self.out / "parts"

    def gather(self) -> dict:
        return _gather(self.out, self.cfg.format, len(self.videos))


def open_run(cfg: FeatureConfig, out: Path, engine: Engine, *, precision: str | None = None) -> FeatureRun:
    """Check a resumption against ``out``'s manifest (or start afresh) and find the videos to compute.
    ``precision``: the one the model runs in, where that is not ``engine``'s."""
    parts = out / "parts"
    index_path = out / "index.jsonl"
    precision = precision or engine.precision.name
    videos = _video_list(cfg, engine.class_names)
    ident = identity(
        model=cfg.model,
        weights=cfg.weights,
        data_sha=data_sha256(cfg.data, videos=cfg.videos),
        views=str(cfg.views),
        precision=precision,
        **({"tokens": True} if cfg.tokens else {}),
    )
    if cfg.resume and index_path.exists():
        check_resume(out, ident, job="features")
    else:
        index_path.unlink(missing_ok=True)
        for p in parts.glob("*.npy"):
            p.unlink()
        write_manifest(out, ident, job="features", about={"weights": cfg.weights, "data": cfg.data})
    parts.mkdir(exist_ok=True)
    repair_tail(index_path)
    done = {
        r["index"] for r in read_records(index_path) if r.get("error") or (parts / f"{r['index']:07d}.npy").exists()
    }
    todo = [i for i in range(len(videos)) if i not in done]
    _write_output(out / "config.json", json.dumps({**cfg.to_dict(), "precision_used": precision}, indent=2))
    return FeatureRun(cfg, out, videos, todo)


def write_video(
    run: FeatureRun,
    index: RecordWriter,
    i: int,
    feats: np.ndarray | None,
    clips: list[dict] | None,
    error: str | None,
) -> None:
    """Write video ``i``'s part ((V, D) features, atomically) and then its index line; or, with
    ``error``, only its error line."""
    item = run.videos.items[i]
    rec = {"index": i, "video": item.path, "label": item.label, "error": error}
    try:
        if error is None:
            assert feats is not None, "a video has features or an error"
            _save_part(run.parts / f"{i:07d}.npy", feats)
            rec["clips"] = clips
        index.write(rec)
    except OSError as e:
        raise RunError(
            f"{run.out}: cannot write ({e.strerror or e}) after {index.written} of the {len(run.todo)} videos of "
            "this run; the finished videos are kept: free space and continue with --resume"
        ) from e


def _save_part(path: Path, feats: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    try:
        np.save(tmp, feats)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_output(path: Path, text: str) -> None:
    try:
        write_text_atomic(path, text)
    except OSError as e:
        raise RunError(
            f"{path}: cannot write ({e.strerror or e}); the finished videos are kept: "
            "free space and continue with --resume"
        ) from e


def _gather(out: Path, fmt: str, total: int) -> dict:
    records = {r["index"]: r for r in read_records(out / "index.jsonl")}
    clip_rows, video_rows, entries, row = [], [], [], 0
    for i in sorted(records):
        rec = records[i]
        if i >= total:
            continue
        if rec.get("error"):
            entries.append({**rec, "video_row": None, "clip_rows": None})
            continue
        feats = np.load(out / "parts" / f"{i:07d}.npy")
        clip_rows.append(feats)
        video_rows.append(feats.mean(0))
        entries.append({**rec, "video_row": len(video_rows) - 1, "clip_rows": [row, row + len(feats)]})
        row += len(feats)
    clips = np.concatenate(clip_rows) if clip_rows else np.zeros((0, 0), np.float32)
    vids = np.stack(video_rows) if video_rows else np.zeros((0, 0), np.float32)
    try:
        if fmt == "npy":
            _save_atomic(out / "clip_features.npy", lambda p: np.save(p, clips))
            _save_atomic(out / "video_features.npy", lambda p: np.save(p, vids))
        else:
            from safetensors.numpy import save_file

            _save_atomic(
                out / "features.safetensors",
                lambda p: save_file({"clip_features": clips, "video_features": vids}, str(p)),
            )
    except OSError as e:
        raise RunError(
            f"{out}: cannot write the gathered features ({e.strerror or e}); the finished videos are "
            "kept: free space and continue with --resume"
        ) from e
    _write_output(out / "index.json", json.dumps(entries, indent=1))
    failed = sum(1 for e in entries if e.get("error"))
    return {
        "videos": len(entries),
        "failed": failed,
        "dim": int(vids.shape[-1]) if len(vids) else 0,
        "clips": int(len(clips)),
        # With --tokens each row is (N, D): the encoder's N tokens of the clip (of the video: their
        # mean over its views).
        **({"tokens": int(vids.shape[1])} if vids.ndim == 3 and len(vids) else {}),
    }


def _save_atomic(path: Path, save) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
