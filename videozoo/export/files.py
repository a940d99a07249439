"""Writing a traced program as an ONNX file or a torch.export ``.pt2``, each carrying the model's record.

Both files are self-describing: the model's :class:`~videozoo.weights.meta.CheckpointMeta` (name,
architecture, the clip it takes, class names, videozoo version) travels as JSON, in the ONNX
file's ``metadata_props`` and in the ``.pt2`` archive's extra files, under ``videozoo_meta``.
Files are written next to the destination and moved into place, so a failed export leaves none.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from videozoo.engine.runtime import META_KEY, OUTPUT_NAMES
from videozoo.weights.errors import CheckpointError
from videozoo.weights.meta import CheckpointMeta

#: opsets the torch.onnx (dynamo) exporter writes
MIN_OPSET, MAX_OPSET = 18, 23
BATCH_AXIS = "batch"


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_onnx(
    program: torch.export.ExportedProgram, path: Path, *, meta: CheckpointMeta, opset: int | None = None
) -> Path:
    """``program`` as an ONNX file at ``path`` (one file, weights inside), its record in metadata_props."""
    with warnings.catch_warnings():
        # The exporter reports its own progress and deprecations; the command prints one line.
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(
            program,
            (),
            dynamo=True,
            opset_version=opset,
            output_names=list(OUTPUT_NAMES),
            verbose=False,
            optimize=True,
        )
    model = onnx_program.model
    _name_batch_axis(model.graph)
    model.producer_name = "videozoo"
    model.producer_version = meta.videozoo_version or ""
    model.doc_string = f"videozoo {meta.model}: inputs {', '.join(v.name for v in model.graph.inputs)}; outputs {', '.join(OUTPUT_NAMES)}"
    model.metadata_props[META_KEY] = meta.to_json()
    with _atomic(path) as tmp:
        onnx_program.save(tmp, external_data=False)
    return path


def _name_batch_axis(graph) -> None:
    """Call the symbolic batch dimension ``batch`` everywhere (the tracer names it s0, s15, ...)."""
    import onnx_ir as ir

    first = graph.inputs[0].shape
    if first is None or isinstance(first[0], int):
        return  # a fixed batch
    old = str(first[0])
    values = [*graph.inputs, *graph.outputs, *(out for node in graph for out in node.outputs)]
    for value in values:
        shape = value.shape
        if shape is not None and any(not isinstance(d, int) and str(d) == old for d in shape):
            value.shape = ir.Shape([BATCH_AXIS if not isinstance(d, int) and str(d) == old else d for d in shape])


def read_onnx_meta(path: str | os.PathLike) -> CheckpointMeta:
    """The record of an exported ONNX file (read without loading its weights)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not an ONNX file ({type(e).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(f"{path}: an ONNX file without the {META_KEY} record")
    return CheckpointMeta.from_json(props[META_KEY], source=str(path))


def write_program(program: torch.export.ExportedProgram, path: Path, *, meta: CheckpointMeta) -> Path:
    """``program`` saved with ``torch.export.save``, its record as the extra file ``videozoo_meta``."""
    with _atomic(path) as tmp:
        torch.export.save(program, tmp, extra_files={META_KEY: meta.to_json()})
    return path


def load_program(path: str | os.PathLike) -> tuple[torch.export.ExportedProgram, CheckpointMeta]:
    """An exported ``.pt2`` and its record; call ``program.module()(video)`` (or ``(slow, fast)``)."""
    extra = {META_KEY: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as e:
        raise CheckpointError(f"{path}: not a torch.export program ({type(e).__name__}: {e})") from None
    if not extra[META_KEY]:
        raise CheckpointError(f"{path}: a torch.export program without the {META_KEY} record")
    return program, CheckpointMeta.from_json(extra[META_KEY], source=str(path))
