"""Predicting the action in a video: decode the views once, batch them through the model, score.

Scoring follows the official protocol: the softmax at every head position, averaged over the
positions (`VideoClassifier.scores`), then averaged over the views. With views "1x1" the one clip
is centred in the video and centre-cropped; "10x3" spreads 10 clips over the video with the
model family's test spacing and takes 3 crops along the long side of each.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from videozoo.models.factory import create_model
from videozoo.engine.optimize import optimize_for_inference, precision_context, to_channels_last
from videozoo.io import open_video
from videozoo.models.base import VideoClassifier
from videozoo.models.spec import ModelSpec
from videozoo.models.registry import get_spec
from videozoo.data.transforms import ClipTransform, transform_for

Views = Tensor | list[Tensor]  # (V, C, T, H, W) or [slow, fast]


@dataclass
class VideoViews:
    """All views of one video, ready for the model, with how they were taken."""

    path: str
    views: Views
    windows: list  # ClipWindow per clip
    crops: int
    short: bool  # the video is shorter than one clip: the last frames repeat
    lost_frames: int  # frames inside the windows that could not be decoded
    decode_seconds: float

    @property
    def num_views(self) -> int:
        return len(self.windows) * self.crops


def load_views(path: str | os.PathLike, transform: ClipTransform, *, threads: int | None = None, frame_fps: float | None = None) -> VideoViews:
    """Decode the windows of `transform`'s views from one pass over the video and transform them."""
    t0 = time.perf_counter()
    with open_video(path, threads=threads, fps=frame_fps) as video:
        windows = transform.windows(video.duration, video_fps=video.fps, video_frames=getattr(video, "num_frames", None))
        clips = video.get_clips([(w.start_sec, w.end_sec) for w in windows])
        video_fps = video.fps
    decode = time.perf_counter() - t0
    # The video's own fps lets the torchvision recipe pick the frames its 15 fps resampling would.
    per_clip = [transform(c, video_fps=video_fps) for c in clips]  # each (crops, C, T, h, w) or [slow, fast]
    if isinstance(per_clip[0], list):
        views: Views = [torch.cat([p[i] for p in per_clip]) for i in range(len(per_clip[0]))]
    else:
        views = torch.cat(per_clip)
    return VideoViews(
        path=str(path),
        views=views,
        windows=list(windows),
        crops=transform.crops,
        short=any(w.short for w in windows),
        lost_frames=sum(len(c.lost) for c in clips),
        decode_seconds=decode,
    )


def _take(views: Views, start: int, stop: int) -> Views:
    return [v[start:stop] for v in views] if isinstance(views, list) else views[start:stop]


def _count(views: Views) -> int:
    return len(views[0]) if isinstance(views, list) else len(views)


@dataclass
class Prediction:
    video: str
    scores: Tensor  # (K,) mean over views of the per-view scores
    view_scores: Tensor  # (V, K)
    class_names: list[str] | None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def top_k(self, k: int = 5) -> list[dict]:
        probs, idx = self.scores.topk(min(k, self.scores.numel()))
        return [
            {"label": self.class_names[i] if self.class_names else str(i), "index": int(i), "probability": float(p)}
            for p, i in zip(probs.tolist(), idx.tolist())
        ]


class Predictor:
    """A model prepared for inference together with its own eval transform.

    model: a registry name (built with `weights`) or a model from `create_model`.
    views: "1x1", "10x3", or any "NxK" (see `videozoo.data.transforms.transform_for`).
    batch_size: views per forward pass (default: all views of a video at once).
    optimize: fold BatchNorm into the convolutions and use the channels-last layout.
    """

    def __init__(
        self,
        model: str | VideoClassifier = "slow_r50",
        *,
        weights: str | os.PathLike | None = "kinetics400",
        views: str = "1x1",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        batch_size: int | None = None,
        optimize: bool = True,
        threads: int | None = None,
    ):
        own_model = isinstance(model, str)  # built here, so it may be changed in place
        if own_model:
            model = create_model(model, weights=weights)
        name = getattr(model, "model_name", None)
        if name is None:
            raise ValueError("the model carries no registry name; create it with videozoo.create_model")
        # A fine-tuned checkpoint may carry its own clip configuration.
        self.spec: ModelSpec = get_spec(name)
        if getattr(model, "input_config", None) is not None:
            self.spec = self.spec.replace(input=model.input_config)
        self.device = torch.device(device)
        self.precision = precision
        self.views = views
        self.transform = transform_for(self.spec, views)
        self.batch_size = batch_size
        self.threads = threads
        self.class_names = model.class_names
        # Checked now, so a bad precision fails before any video is decoded.
        precision_context(precision, self.device)
        model = model.eval().to(self.device)
        if optimize:
            example = self._example(model)
            model = optimize_for_inference(model, example, inplace=own_model)
        self.model = model

    def _example(self, model: VideoClassifier) -> Views:
        from videozoo.models.flops import view_input

        return view_input(self.spec, crop=64 if not getattr(type(model), "fixed_input_size", False) else None, device=self.device)

    @torch.inference_mode()
    def _batched(self, fn, views: Views) -> Tensor:
        n = _count(views)
        step = self.batch_size or n
        out = []
        for start in range(0, n, step):
            x = _take(views, start, start + step)
            x = [v.to(self.device, non_blocking=True) for v in x] if isinstance(x, list) else x.to(self.device, non_blocking=True)
            with precision_context(self.precision, self.device):
                out.append(fn(to_channels_last(x)).float().cpu())
        return torch.cat(out)

    def score_views(self, views: Views) -> Tensor:
        """(V, K) float32 scores of a stack of views, in batches of `batch_size`."""
        return self._batched(self.model.scores, views)

    def feature_views(self, views: Views) -> Tensor:
        """(V, D) float32 pooled features (before the classifier) of a stack of views."""
        return self._batched(self.model.forward_features, views)

    def predict_views(self, loaded: VideoViews) -> Prediction:
        t0 = time.perf_counter()
        view_scores = self.score_views(loaded.views)
        info = {"views": f"{len(loaded.windows)}x{loaded.crops}", "short_video": loaded.short}
        if loaded.lost_frames:
            info["lost_frames"] = loaded.lost_frames
        return Prediction(
            video=loaded.path,
            scores=view_scores.mean(0),
            view_scores=view_scores,
            class_names=self.class_names,
            seconds=loaded.decode_seconds + time.perf_counter() - t0,
            info=info,
        )

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        return self.predict_views(load_views(path, self.transform, threads=self.threads, frame_fps=self.spec.input.fps))


def predict(
    video_path: str | os.PathLike,
    model: str | VideoClassifier = "slow_r50",
    weights: str | os.PathLike | None = "kinetics400",
    views: str = "1x1",
    top_k: int = 5,
    *,
    device: str = "cpu",
    precision: str = "fp32",
) -> list[tuple[str, float]]:
    """The top-k (label, probability) for one video (Kinetics-400 names, or the checkpoint's own)."""
    predictor = Predictor(model, weights=weights, views=views, device=device, precision=precision)
    result = predictor.predict_file(video_path)
    return [(r["label"], r["probability"]) for r in result.top_k(top_k)]
