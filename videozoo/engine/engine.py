"""The engine: a model prepared for inference with its own transform, written once for every job.

    engine = Engine.build("slow_r50", weights="kinetics400", views="10x3")
    engine.predict("archery.mp4").top_k(5)

decode -> views -> batched forward -> scores. Predict, evaluate, features, timeline and serve all
call it; none of them samples, batches, or handles precision or devices on its own.

- views: a :class:`~videozoo.data.plan.ViewPlan` (``"10x3"`` is parsed once, at the edge).
- precision: ``auto`` (bf16 only where native, else fp32), ``fp32``, ``bf16``, ``fp16`` (CUDA).
- batch_size: views per forward pass; by default chosen from one view's measured largest activation
  and a memory budget (``videozoo.engine.batching``).
- decoding of many videos runs in worker processes (:meth:`Engine.map`) while the main process
  runs the model; each worker holds at most one video's views beyond the one in flight.
- backend: the forward pass runs the eager module (``torch``) or an exported ONNX file in
  onnxruntime (``onnxruntime``; ``videozoo.engine.runtime``), with the same transforms and views.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.data.plan import ViewPlan
from videozoo.data.transforms import ClipTransform, transform_for
from videozoo.data.workers import Stall, WatchedLoader, WorkerStalled, check_stall_seconds
from videozoo.engine.batching import choose_batch_size, largest_activation_bytes, memory_budget
from videozoo.engine.openvino import OpenVinoRunner, auto_backend
from videozoo.engine.optimize import optimize_for_inference
from videozoo.engine.precision import Precision, resolve_precision
from videozoo.engine.prediction import Prediction
from videozoo.engine.runtime import OnnxModel, OnnxRunner, TorchRunner, resolve_backend
from videozoo.engine.views import VideoViews, Views, count_views, load_views, take_views
from videozoo.models.base import VideoClassifier
from videozoo.models.flops import view_input
from videozoo.models.registry import get_spec

OUTPUTS = ("scores", "features", "logits", "tokens")  # tokens: (V, N, D), of models that have them


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA where available, else CPU; an unusable device is one clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r}: not a device (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here (use cpu or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: there are only {torch.cuda.device_count()} GPU(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: MPS (Apple GPU) is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device}: unsupported device type {dev.type!r}")
    return dev


@dataclass(frozen=True)
class VideoResult:
    """One video of :meth:`Engine.map`: its position, and the prediction or why it failed."""

    index: int
    path: str
    prediction: Prediction | None
    output: Tensor | None  # (V, D) features or (V, K) logits when asked for instead of scores
    loaded: VideoViews | None
    error: str | None


class Engine:
    """A model ready for inference with its own eval transform, precision, device and batching.

    model: a model from :func:`videozoo.create_model` (use :meth:`build` for a registry name), or
    an exported ONNX file opened as an :class:`~videozoo.engine.runtime.OnnxModel`.
    inplace: the engine may fold BatchNorm into the model's own weights (no second copy); set it
    when the engine owns the model.
    images: score a still image (PNG, JPEG, ...) as a one-frame clip; by default it is refused
    (:class:`~videozoo.io.StillImageError`), as a picture holds no motion.
    """

    def __init__(
        self,
        model: VideoClassifier | OnnxModel,
        *,
        views: str | ViewPlan = "1x1",
        device: str | torch.device = "cpu",
        precision: str | Precision = "auto",
        batch_size: int | None = None,
        optimize: bool = True,
        threads: int | None = None,
        inplace: bool = False,
        backend: str = "torch",
        images: bool = False,
    ):
        name = getattr(model, "model_name", None)
        if name is None:
            raise ValueError("the model carries no registry name; create it with videozoo.create_model")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
        self.model_name: str = name
        # A fine-tuned checkpoint may carry its own clip configuration.
        self.input: InputConfig = getattr(model, "input_config", None) or get_spec(name).input
        self.plan = ViewPlan.parse(views).resolve(self.input)
        self.transform: ClipTransform = transform_for(self.input, self.plan)
        self.device = resolve_device(device)
        self.threads = threads
        # Still images (PNG, JPEG, ...) are refused unless asked for: a picture holds no motion.
        self.images = images
        self.class_names: list[str] | None = model.class_names
        if isinstance(model, OnnxModel):
            self.precision = _onnx_precision(precision, model, self.device)
            self.runner: TorchRunner | OnnxRunner | OpenVinoRunner = OnnxRunner(model)
            self.model: VideoClassifier | OnnxModel = model
            self.view_bytes = self._onnx_view_bytes(model)
        else:
            # Checked now, so a bad precision fails before any video is decoded.
            self.precision = resolve_precision(precision, self.device)
            model = model.eval().to(self.device)
            # One view at the eval crop; the passes below read shapes only (an empty batch).
            example = view_input(get_spec(self.model_name).replace(input=self.input), device=self.device)
            fallback = backend == "auto"  # auto runs eagerly what OpenVINO cannot convert
            if fallback:
                backend = auto_backend(self.device, self.precision.name)
            if backend not in ("torch", "openvino"):
                raise ValueError(f"--backend {backend!r}: a model object runs with torch or openvino")
            if backend == "openvino":
                if self.device.type != "cpu":
                    raise ValueError(f"--backend openvino runs on the CPU, not {self.device} (use --device cpu)")
                # BatchNorm folded, plain layouts: what OpenVINO converts (oneDNN fusions would not read).
                model = optimize_for_inference(model, example, channels_last=False, inplace=inplace)
                try:
                    self.runner = OpenVinoRunner(model, example, self.precision, log=_log)
                except Exception as e:
                    if not fallback:
                        raise
                    _log(f"openvino: cannot convert {self.model_name} ({type(e).__name__}: {e}); running it with torch")
                    backend = "torch"
            if backend == "torch":
                if optimize:
                    cpu = self.device.type == "cpu"
                    model = optimize_for_inference(model, example, fuse_relu=cpu, inplace=inplace)
                self.runner = TorchRunner(model, self.device, self.precision)
            self.model = model
            # Counted in float32 even under bf16: autocast keeps float32 copies of some tensors alive.
            self.view_bytes = largest_activation_bytes(model, example)
        self.batch_size = batch_size or choose_batch_size(
            self.view_bytes, memory_budget(self.device), device=self.device
        )

    @property
    def backend(self) -> str:
        """``torch`` or ``onnxruntime``: what runs the forward pass."""
        return self.runner.backend

    @classmethod
    def build(
        cls, name: str, *, weights: str | os.PathLike | None = "default", backend: str = "auto", **kwargs: Any
    ) -> Engine:
        """Create the registry model ``name`` with ``weights`` and an engine that owns it.

        backend: ``torch`` (the eager model), ``onnxruntime`` (``weights`` is a file written by
        ``videozoo export --format onnx``), ``openvino`` (the model converted and compiled by
        OpenVINO, cached: ``videozoo.engine.openvino``) or ``auto`` (onnxruntime for a ``.onnx`` file;
        else openvino on a CPU where it is installed, torch otherwise; ``$VIDEOZOO_BACKEND`` decides).
        """
        from videozoo.models.factory import create_model

        chosen = resolve_backend(backend, weights)
        if backend == "auto" and chosen == "torch":
            chosen = "auto"  # torch or openvino, once the device and precision are known
        if chosen == "onnxruntime":
            get_spec(name)  # an unknown name fails here, before the file is read
            assert weights is not None  # resolve_backend picks onnxruntime only for a file
            onnx = OnnxModel(weights, device=resolve_device(kwargs.get("device", "cpu")))
            if onnx.model_name != name:
                raise ValueError(
                    f"{weights}: holds an export of {onnx.model_name!r}, not {name!r} (--model {onnx.model_name})"
                )
            return cls(onnx, **kwargs)
        return cls(create_model(name, weights=weights), inplace=True, backend=chosen, **kwargs)

    def with_views(self, views: str | ViewPlan) -> Engine:
        """This engine with another view plan: the same prepared model (shared, not copied).

        For a caller that keeps one warm engine and takes the plan per request (the server).
        """
        plan = ViewPlan.parse(views).resolve(self.input)
        if plan == self.plan:
            return self
        other = copy.copy(self)
        other.plan, other.transform = plan, transform_for(self.input, plan)
        return other

    def with_images(self, images: bool) -> Engine:
        """This engine, scoring still images as one-frame clips (``images``) or refusing them."""
        if images == self.images:
            return self
        other = copy.copy(self)
        other.images = images
        return other

    # -- decode -> views --------------------------------------------------------------------
    def load(self, path: str | os.PathLike, *, lazy: bool = False) -> VideoViews:
        """Decode and transform every view of one video (one decoding pass).

        With ``lazy`` the views stay the clips' kept frames, transformed clip by clip as the
        forward passes reach them (:class:`~videozoo.engine.views.ClipViews`): what ``predict``
        and ``map`` use, so a video never holds all its float views at once.
        """
        return load_views(
            path, self.transform, threads=self.threads, frame_fps=self.input.fps, lazy=lazy, images=self.images
        )

    # -- batched forward -> scores ----------------------------------------------------------
    @torch.inference_mode()
    def forward(self, views: Views, output: str = "scores") -> Tensor:
        """(V, K) float32 scores (or (V, D) features, (V, K) logits) of a stack of views."""
        self._check_output(output)
        n = count_views(views)
        return torch.cat(
            [self.runner(take_views(views, s, s + self.batch_size), output) for s in range(0, n, self.batch_size)]
        )

    def predict_views(self, loaded: VideoViews) -> Prediction:
        t0 = time.perf_counter()
        view_scores = self.forward(loaded.views)
        return self._prediction(loaded, view_scores, loaded.decode_seconds + time.perf_counter() - t0)

    def predict(self, path: str | os.PathLike) -> Prediction:
        return self.predict_views(self.load(path, lazy=True))

    def map(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        workers: int = 2,
        output: str = "scores",
        indices: Sequence[int] | None = None,
        stall_timeout: float | None = None,
    ) -> Iterator[VideoResult]:
        """Score (or embed) many videos, decoding in ``workers`` processes while the model runs.

        Yields one :class:`VideoResult` per video in order; a video that cannot be decoded yields
        its error and the run goes on. ``indices`` labels the results (default 0..n-1).
        A worker that makes no progress for ``stall_timeout`` seconds (default
        :data:`~videozoo.data.workers.DEFAULT_STALL_SECONDS`) is stopped, with its stack reported:
        its video yields an error and the remaining videos are decoded by fresh workers.
        """
        self._check_output(output)
        stall = check_stall_seconds(stall_timeout)
        labels = list(indices) if indices is not None else list(range(len(paths)))
        files = [os.fspath(p) for p in paths]
        stalled: dict[int, Stall] = {}  # position -> why its worker was stopped
        done = 0  # results yielded: positions [0, done)
        while done < len(files):
            todo = [p for p in range(done, len(files)) if p not in stalled]
            data = _DecodeDataset(
                [files[p] for p in todo],
                [labels[p] for p in todo],
                self.transform,
                self.threads,
                self.input.fps,
                images=self.images,
            )
            loader = WatchedLoader(
                data,
                batch_size=None,
                num_workers=workers,
                collate_fn=_identity,
                prefetch_factor=1 if workers > 0 else None,
                stall_seconds=stall,
                describe=data.path_of,
            )
            items = iter(loader)
            try:
                for position in range(done, len(files)):
                    if position in stalled:
                        yield VideoResult(labels[position], files[position], None, None, None, stalled[position].error)
                        done = position + 1
                        continue
                    try:
                        index, path, loaded, error = next(items)
                    except WorkerStalled as e:
                        for s in e.stalls:
                            stalled[todo[s.item]] = s
                        break  # fresh workers for the videos left
                    done = position + 1
                    if error is not None:
                        yield VideoResult(index, path, None, None, None, error)
                        continue
                    t0 = time.perf_counter()
                    out = self.forward(loaded.views, output)
                    seconds = loaded.decode_seconds + time.perf_counter() - t0
                    pred = self._prediction(loaded, out, seconds) if output == "scores" else None
                    yield VideoResult(index, path, pred, None if output == "scores" else out, loaded, None)
            finally:
                items.close()  # type: ignore[attr-defined]

    # -- internals --------------------------------------------------------------------------
    def _check_output(self, output: str) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"unknown engine output {output!r}; choose from {', '.join(OUTPUTS)}")
        if output == "tokens" and not (self.runner.backend == "torch" and hasattr(self.model, "forward_tokens")):
            raise ValueError(
                f"{self.model_name}: encoder tokens come from models that expose them (V-JEPA 2), "
                f"run by the torch backend (this engine runs {self.runner.backend})"
            )

    def _prediction(self, loaded: VideoViews, view_scores: Tensor, seconds: float) -> Prediction:
        info: dict[str, Any] = {"short_video": loaded.short}
        if loaded.lost_frames:
            info["lost_frames"] = loaded.lost_frames
        if loaded.notes:
            info["notes"] = list(loaded.notes)
        return Prediction(
            video=loaded.path,
            scores=view_scores.mean(0),
            view_scores=view_scores,
            class_names=self.class_names,
            views=str(self.plan),
            precision=self.precision.name,
            seconds=seconds,
            info=info,
        )

    def _onnx_view_bytes(self, onnx: OnnxModel) -> int:
        # Sized as the eager model would be: its activations, measured on the meta device (no arithmetic).
        spec = get_spec(self.model_name)
        with torch.device("meta"):
            shadow = spec.build(num_classes=onnx.num_classes, **dict(onnx.meta.arch)).eval()
        example = view_input(spec.replace(input=self.input), device="meta")
        return largest_activation_bytes(shadow, example)


def _onnx_precision(precision: str | Precision, onnx: OnnxModel, device: torch.device) -> Precision:
    """An ONNX graph runs in the precision it was exported in: ``auto`` takes it, another is an error."""
    name = precision.name if isinstance(precision, Precision) else precision
    if name not in ("auto", onnx.precision):
        raise ValueError(
            f"--precision {name}: {onnx.path} was exported in {onnx.precision} and onnxruntime runs it so "
            f"(use --precision auto, or export again with --precision {name})"
        )
    return Precision(onnx.precision, device.type)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _identity(item: Any) -> Any:
    return item


class _DecodeDataset(torch.utils.data.Dataset):
    """Item i -> (label, path, the decoded and transformed views, None) or (label, path, None, error)."""

    def __init__(
        self,
        paths: list[str],
        labels: list[int],
        transform: ClipTransform,
        threads: int | None,
        fps: float,
        *,
        images: bool = False,
    ):
        self.paths, self.labels, self.transform, self.threads, self.fps = paths, labels, transform, threads, fps
        self.images = images

    def __len__(self) -> int:
        return len(self.paths)

    def path_of(self, i: int) -> str:
        return self.paths[i]

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            return (
                self.labels[i],
                path,
                load_views(
                    path, self.transform, threads=self.threads, frame_fps=self.fps, lazy=True, images=self.images
                ),
                None,
            )
        except Exception as e:  # one bad video never stops the run
            reason = str(e) if path in str(e) else f"{path}: {e}"
            return self.labels[i], path, None, f"{type(e).__name__}: {reason}"
