"""What runs the engine's forward pass: the eager torch module, or an exported ONNX file in onnxruntime.

The engine hands each micro-batch of views to a runner and gets float32 CPU tensors back:
(B, K) scores or logits, or (B, D) features. Two backends:

- ``torch``: the prepared eager module (BatchNorm folded, channels-last) under the engine's
  precision.
- ``onnxruntime``: a file written by ``videozoo export --format onnx``. Its graph takes ``video``
  (or ``slow`` and ``fast`` for two-pathway models), returns ``logits``, ``scores`` and
  ``features`` (the three engine outputs, computed as the eager model computes them), and carries
  the model's :class:`~videozoo.weights.meta.CheckpointMeta` record (clip, classes, version) as
  JSON under the metadata key ``videozoo_meta``; the engine takes its transform from that record.

- ``openvino``: the prepared module converted and compiled by OpenVINO (``videozoo.engine.openvino``).

``auto`` picks onnxruntime for a ``.onnx`` weights file and torch for everything else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.engine.optimize import to_channels_last
from videozoo.engine.precision import Precision
from videozoo.models.base import VideoClassifier
from videozoo.models.registry import get_spec
from videozoo.weights.errors import CheckpointError
from videozoo.weights.meta import CheckpointMeta

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
#: metadata_props key of an exported ONNX file (and extra-file stem of a .pt2) holding the record
META_KEY = "videozoo_meta"
#: graph input names: one-pathway models take one clip, two-pathway models [slow, fast]
ONE_PATHWAY_INPUTS = ("video",)
TWO_PATHWAY_INPUTS = ("slow", "fast")
#: graph outputs, in order: the engine's three outputs
OUTPUT_NAMES = ("logits", "scores", "features")
EXPORT_EXTRA = "pip install videozoo[export]"

Views = Tensor | list[Tensor]


class BackendUnavailableError(RuntimeError):
    """The backend's package is not installed; the message says how to install it."""


def resolve_backend(backend: str, weights: Any) -> str:
    """``auto``/``torch``/``onnxruntime`` -> the backend that runs ``weights``, or one clear error."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}")
    is_onnx = isinstance(weights, (str, os.PathLike)) and str(weights).lower().endswith(".onnx")
    if backend == "auto":
        return "onnxruntime" if is_onnx else "torch"
    if backend == "onnxruntime" and not (isinstance(weights, (str, os.PathLike)) and Path(weights).is_file()):
        raise ValueError(
            f"--backend onnxruntime runs an exported ONNX file: give it as --weights FILE.onnx "
            f"(`videozoo export MODEL --format onnx` writes one), not {weights!r}"
        )
    if backend in ("torch", "openvino") and is_onnx:
        raise ValueError(f"--weights {weights}: an ONNX file runs with --backend onnxruntime (or auto)")
    return backend


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(f"the onnxruntime backend needs onnxruntime: {EXPORT_EXTRA}") from None
    return onnxruntime


class TorchRunner:
    """The eager module on ``device`` under ``precision``."""

    backend = "torch"

    def __init__(self, model: VideoClassifier, device: torch.device, precision: Precision):
        self.model, self.device, self.precision = model, device, precision

    def __call__(self, views: Views, output: str) -> Tensor:
        fns: dict[str, Callable[[Views], Tensor]] = {
            "scores": self.model.scores,
            "features": self.model.forward_features,
            "logits": self.model,
        }
        tokens = getattr(self.model, "forward_tokens", None)
        if tokens is not None:
            fns["tokens"] = tokens  # (B, N, D): an encoder's tokens (V-JEPA 2)
        fn = fns[output]
        if isinstance(views, list):
            x: Views = [v.to(self.device, non_blocking=True) for v in views]
        else:
            x = views.to(self.device, non_blocking=True)
        with self.precision.autocast():
            return fn(to_channels_last(x)).float().cpu()


class OnnxModel:
    """An exported ONNX file in an onnxruntime session, with the record it carries.

    Quacks like a model for what the engine reads: ``model_name``, ``input_config``,
    ``class_names``, ``num_classes``; ``precision`` is the one the graph was exported in.
    """

    def __init__(self, path: str | os.PathLike, *, device: torch.device | str = "cpu", threads: int | None = None):
        ort = import_onnxruntime()
        self.path = str(path)
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        providers = _providers(ort, torch.device(device), self.path)
        options = ort.SessionOptions()
        # The same thread count as the eager path (OMP_NUM_THREADS / torch.set_num_threads).
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.path, options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"{self.path}: onnxruntime cannot load this file as an ONNX model ({first})"
            ) from None
        self.meta = read_onnx_meta(self.session, self.path)
        self.model_name: str = self.meta.model
        # Files videozoo writes always record the clip; the registry's is the fallback.
        self.input_config: InputConfig = self.meta.input or get_spec(self.meta.model).input
        self.class_names = list(self.meta.class_names) if self.meta.class_names is not None else None
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        expected = TWO_PATHWAY_INPUTS if self._two_pathway() else ONE_PATHWAY_INPUTS
        if tuple(self.input_names) != expected or tuple(outputs[: len(OUTPUT_NAMES)]) != OUTPUT_NAMES:
            raise CheckpointError(
                f"{self.path}: not a videozoo export of {self.model_name}: inputs {self.input_names}, outputs "
                f"{outputs} (expected inputs {list(expected)}, outputs {list(OUTPUT_NAMES)})"
            )
        kind = self.session.get_inputs()[0].type
        self.dtype = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16}.get(kind)
        if self.dtype is None:
            raise CheckpointError(f"{self.path}: input {self.input_names[0]!r} has type {kind}, not float or float16")
        self.precision = "fp16" if self.dtype == torch.float16 else "fp32"
        dims = self.session.get_outputs()[0].shape
        self.num_classes = dims[-1] if isinstance(dims[-1], int) else self.meta.num_classes
        self.static_batch = dims[0] if isinstance(dims[0], int) else None

    def _two_pathway(self) -> bool:
        return self.input_config.slow_alpha is not None

    def run(self, views: Views, output: str) -> Tensor:
        """One micro-batch through the session: (B, K) or (B, D) float32 on the CPU."""
        parts = views if isinstance(views, list) else [views]
        feed = {
            name: t.detach().to("cpu", self.dtype).contiguous().numpy()
            for name, t in zip(self.input_names, parts, strict=False)
        }
        n = len(parts[0])
        if self.static_batch is not None and n != self.static_batch:
            return self._run_static(parts, output, self.static_batch)
        (out,) = self.session.run([output], feed)
        return torch.from_numpy(out).float()

    def _run_static(self, parts: list[Tensor], output: str, b: int) -> Tensor:
        # A file exported with --batch N takes exactly N views: pad the last micro-batch.
        n = len(parts[0])
        outs = []
        for start in range(0, n, b):
            chunk = [p[start : start + b] for p in parts]
            got = len(chunk[0])
            if got < b:
                chunk = [torch.cat([c, c[-1:].expand(b - got, *c.shape[1:])]) for c in chunk]
            feed = {
                name: c.to(self.dtype).contiguous().numpy() for name, c in zip(self.input_names, chunk, strict=False)
            }
            outs.append(torch.from_numpy(self.session.run([output], feed)[0]).float()[:got])
        return torch.cat(outs)


class OnnxRunner:
    """Each micro-batch through an :class:`OnnxModel`'s session."""

    backend = "onnxruntime"

    def __init__(self, model: OnnxModel):
        self.model = model

    def __call__(self, views: Views, output: str) -> Tensor:
        return self.model.run(views, output)


def read_onnx_meta(session: Any, source: str) -> CheckpointMeta:
    """The CheckpointMeta record of an exported file's session, or a clear error naming the file."""
    props = session.get_modelmeta().custom_metadata_map
    if META_KEY not in props:
        raise CheckpointError(f"{source}: an ONNX file without the {META_KEY} record: export it with `videozoo export`")
    return CheckpointMeta.from_json(props[META_KEY], source=source)


def _providers(ort: Any, device: torch.device, source: str) -> list[str]:
    available = ort.get_available_providers()
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"--device {device}: this onnxruntime has no provider for it (available: {', '.join(available)})")
