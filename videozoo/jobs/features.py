"""Extracting pooled features (the classifier's input) per clip and per video.

Each finished video is written at once, atomically, to `parts/<index>.npy` (its views' features,
(V, D)) and a line of `index.jsonl`, so a killed run resumes where it stopped. At the end the
parts are gathered into `clip_features.<fmt>` (all views, in video order), `video_features.<fmt>`
(the mean over each video's views) and `index.json`, which maps rows to videos and clip times.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from videozoo.data.datasets import VideoItem, VideoList, load_video_list
from videozoo.data.plan import ViewPlan
from videozoo.engine import Engine
from videozoo.jobs.records import read_records
from videozoo.models.factory import create_model


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
    resume: bool = False

    def __post_init__(self) -> None:
        self.views = ViewPlan.parse(self.views)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "views": str(self.views)}


def _video_list(cfg: FeatureConfig, classes: list[str] | None) -> VideoList:
    if cfg.data:
        return load_video_list(cfg.data, classes=classes)
    if not cfg.videos:
        raise ValueError("give a dataset spec (--data) or video files")
    return VideoList([VideoItem(str(v), None) for v in cfg.videos], classes or [], "command line")


def extract_features(cfg: FeatureConfig) -> dict:
    if cfg.format not in ("npy", "safetensors"):
        raise ValueError(f"unknown feature format {cfg.format!r}: use npy or safetensors")
    out = Path(cfg.out)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.jsonl"
    if not cfg.resume:
        index_path.unlink(missing_ok=True)
        for p in parts.glob("*.npy"):
            p.unlink()

    model = create_model(cfg.model, weights=cfg.weights)
    videos = _video_list(cfg, model.class_names)
    done = {r["index"] for r in read_records(index_path) if r.get("error") or (parts / f"{r['index']:07d}.npy").exists()}
    todo = [i for i in range(len(videos)) if i not in done]
    engine = Engine(model, views=cfg.views, device=cfg.device, precision=cfg.precision, batch_size=cfg.batch_size,
                    inplace=True)
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "precision_used": engine.precision.name}, indent=2))
    with open(index_path, "a") as index:
        for result in engine.map([videos.items[i].path for i in todo], workers=cfg.workers, output="features",
                                 indices=todo):
            i, item = result.index, videos.items[result.index]
            rec = {"index": i, "video": item.path, "label": item.label, "error": result.error}
            if result.error is None:
                loaded = result.loaded
                feats = result.output.numpy()  # (V, D)
                tmp = parts / f".{i:07d}.tmp.npy"
                np.save(tmp, feats)
                os.replace(tmp, parts / f"{i:07d}.npy")
                rec["clips"] = [
                    {"start_sec": round(w.start_sec, 6), "end_sec": round(w.end_sec, 6), "crop": c}
                    for w in loaded.windows for c in range(loaded.crops)
                ]
            index.write(json.dumps(rec) + "\n")
            index.flush()
    return _gather(out, cfg.format, len(videos))


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
    if fmt == "npy":
        np.save(out / "clip_features.npy", clips)
        np.save(out / "video_features.npy", vids)
    else:
        from safetensors.numpy import save_file

        save_file({"clip_features": clips, "video_features": vids}, str(out / "features.safetensors"))
    (out / "index.json").write_text(json.dumps(entries, indent=1))
    failed = sum(1 for e in entries if e.get("error"))
    return {"videos": len(entries), "failed": failed, "dim": int(vids.shape[1]) if len(vids) else 0, "clips": int(len(clips))}
