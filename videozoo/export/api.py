"""`videozoo.export`: a registry model (or a model object) in, one self-describing file out.

    videozoo.export("x3d_s", weights="kinetics400", format="onnx", out="x3d_s.onnx")
    videozoo.export(model, format="exported-program", batch=8)

Everything that can be checked before the (slow) trace is checked first: the format, batch,
opset and precision, that the destination can be written, and that the ``export`` extra is
installed for ONNX; each failure is one :class:`ExportError` (or the loader's CheckpointError for
unreadable weights) naming the flag or file.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from videozoo.data.input_config import InputConfig
from videozoo.engine.runtime import EXPORT_EXTRA, BackendUnavailableError
from videozoo.export.files import MAX_OPSET, MIN_OPSET, write_onnx, write_program
from videozoo.export.graph import DTYPES, prepare, trace
from videozoo.models.base import VideoClassifier
from videozoo.models.factory import checkpoint_meta, create_model
from videozoo.models.registry import get_spec

FORMATS = {"onnx": ".onnx", "exported-program": ".pt2"}


class ExportError(ValueError):
    """An export cannot be made as asked; the message names the flag or file and why."""


class ExportExtraMissingError(BackendUnavailableError):
    """The packages of the ``export`` extra are not installed."""


def export(
    model: str | VideoClassifier,
    *,
    format: str = "onnx",
    out: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = "default",
    batch: int | str = "dynamic",
    opset: int | None = None,
    precision: str = "fp32",
    clip: InputConfig | None = None,
) -> Path:
    """Export ``model`` (a registry name, built with ``weights``, or a model from create_model).

    format: ``onnx`` (for onnxruntime and other ONNX runtimes) or ``exported-program`` (a
    ``torch.export`` ``.pt2``: ``torch.export.load(path).module()``).
    out: the file (default ``<model><.onnx|.pt2>`` in the working directory).
    weights: for a name: ``default`` (the entry's published weights), another published key, a
    checkpoint path, or None (random).
    batch: ``dynamic`` (any batch; the default) or a fixed number of clips.
    precision: ``fp32`` (the reference arithmetic) or ``fp16`` (for GPU runtimes).
    clip: the clip the file takes (default: the model's own eval clip); the file records it.
    Returns the path written.
    """
    fixed_batch = _check_batch(batch)
    if format not in FORMATS:
        raise ExportError(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    if opset is not None and format != "onnx":
        raise ExportError("--opset applies to --format onnx only")
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset}: the exporter writes opsets {MIN_OPSET} to {MAX_OPSET}")
    if precision not in DTYPES:
        raise ExportError(f"--precision {precision!r}: choose from {', '.join(DTYPES)}")
    if format == "onnx":
        require_onnx_extra()
    name = model if isinstance(model, str) else getattr(model, "model_name", None)
    if not name:
        raise ExportError("the model carries no registry name (`model_name`); create it with videozoo.create_model")
    get_spec(name)  # an unknown name is a KeyError naming the similar ones
    path = Path(out) if out is not None else Path(f"{name}{FORMATS[format]}")
    check_writable(path)

    owned = isinstance(model, str)
    net = create_model(name, weights=resolve_weights(name, weights)) if isinstance(model, str) else model
    clip = clip or getattr(net, "input_config", None) or get_spec(name).input
    meta = dataclasses.replace(checkpoint_meta(net), input=clip)
    net = prepare(net, clip, precision=precision, inplace=owned)
    program = trace(net, clip, batch=fixed_batch, precision=precision)
    if format == "onnx":
        return write_onnx(program, path, meta=meta, opset=opset)
    return write_program(program, path, meta=meta)


def resolve_weights(name: str, weights: str | os.PathLike | None) -> str | os.PathLike | None:
    """``default`` -> the entry's default published weights (an error where it has none)."""
    if weights != "default":
        return weights
    spec = get_spec(name)
    if "default" in spec.weights:
        return "default"
    key = getattr(spec, "default_weights", None) or next(iter(spec.weights), None)
    if key is None:
        raise ExportError(f"{name} has no published weights: give --weights PATH (a checkpoint) or none (random)")
    return key


def require_onnx_extra() -> None:
    """ONNX export needs onnx and onnxscript (torch.onnx's exporter); one clear error if absent."""
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportExtraMissingError(f"--format onnx needs {' and '.join(missing)}: {EXPORT_EXTRA}")


def check_writable(path: Path) -> None:
    """Fail now, not after the trace, when ``path`` cannot be written."""
    if path.is_dir():
        raise ExportError(f"--out {path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"--out {path}: the folder {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise ExportError(f"--out {path}: cannot write in {parent} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    if path.exists() and not os.access(path, os.W_OK):
        raise ExportError(f"--out {path}: the file exists and is read-only")


def _check_batch(batch: int | str) -> int | None:
    if batch == "dynamic" or batch is None:
        return None
    try:
        n = int(batch)
    except (TypeError, ValueError):
        raise ExportError(f"--batch {batch!r}: give dynamic or a whole number") from None
    if n < 1 or str(n) != str(batch).strip():
        raise ExportError(f"--batch {batch!r}: give dynamic or a whole number of at least 1")
    return n
