"""Converting a checkpoint of any supported format to videozoo's own `.pth` or `.safetensors`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from videozoo.models.factory import model_from_checkpoint, save_model
from videozoo.models.registry import get_spec, list_models
from videozoo.weights.checkpoint import Checkpoint, CheckpointError, read_checkpoint


def check_output_file(src: Path, dst: Path) -> None:
    """Raise ValueError unless `dst` is a new or replaceable checkpoint file other than `src`."""
    if dst.is_dir():
        raise ValueError(f"{dst}: is a folder; name the output file, e.g. {dst / (src.stem + '.safetensors')}")
    if dst.suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"{dst}: the output must end in .pth, .pt or .safetensors")
    same = dst.exists() and src.exists() and os.path.samefile(src, dst)
    if same or dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: is the input checkpoint itself; write the converted file elsewhere")
    folder = next(p for p in (dst.parent, *dst.parent.parents) if p.exists())
    if not folder.is_dir():
        raise ValueError(f"{dst}: {folder} is a file, so the output cannot be written under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{dst}: cannot write in {folder} ({e.strerror or e})") from None


def infer_model(ckpt: Checkpoint) -> str:
    """The registry model whose keys and shapes the checkpoint fits exactly (built on meta, no weights)."""
    if ckpt.model_name:
        return ckpt.model_name
    fits = []
    for name in list_models():
        spec = get_spec(name)
        try:
            state = spec.cls.convert_checkpoint(ckpt.format, ckpt.state_dict, source=ckpt.source)
        except CheckpointError:
            continue
        if spec.cls.has_classifier:
            head = state.get(f"{spec.cls.classifier_name}.weight")
            if head is None:
                continue
            with torch.device("meta"):
                own = spec.build(num_classes=head.shape[0]).state_dict()
        else:  # a video-text model: no classifier to size
            with torch.device("meta"):
                own = spec.build().state_dict()
        if own.keys() == state.keys() and all(own[k].shape == state[k].shape for k in own):
            fits.append(name)
    if len(fits) != 1:
        what = "no model of the zoo" if not fits else f"several models ({', '.join(fits)})"
        raise CheckpointError(f"{ckpt.source}: {what} fits this checkpoint exactly; name one with --model")
    return fits[0]


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | None = None) -> tuple[str, Path]:
    """Write `src` as a videozoo checkpoint `dst`, with its record (architecture, clip, classes, training).

    `dst` is checked before anything is read (a folder, the input itself, a place nobody may write
    in are errors) and written atomically: a failed conversion leaves no file behind, and an
    existing `dst` stays as it was.
    """
    src, dst = Path(src), Path(dst)
    check_output_file(src, dst)
    ckpt = read_checkpoint(src)
    name = model or infer_model(ckpt)
    # Loading through the model validates every key and shape before anything is written.
    net = model_from_checkpoint(get_spec(name), ckpt)
    try:
        save_model(net, dst, training=ckpt.meta.training if ckpt.meta is not None else None)
    except OSError as e:
        raise OSError(f"{dst}: cannot write ({e.strerror or e}); nothing was written") from e
    return name, dst
