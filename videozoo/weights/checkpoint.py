"""Reading and writing checkpoint files, whatever their format, without running code from them.

Formats are told apart by content, not by file name:
- safetensors: an 8-byte header length followed by a JSON header.
- torch.save zip archives (and the legacy torch pickle): loaded with `weights_only=True`. Inside:
  pytorchvideo model-zoo `{'model_state': ...}`, PySlowFast `{'model_state': ...}` with
  `s1.pathway0_stem...` names (optionally prefixed `model.`), torchvision bare state dicts, and
  videozoo's own `{'videozoo': 1, 'state_dict': ..., 'class_names': ...}`.
- the Caffe2 pickle of video-nonlocal-net: `{'blobs': {name: ndarray}}`, read by a data-only
  unpickler.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from videozoo.weights.safe_pickle import UnsafePickleError, load_data_pickle


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message names the file and the reason."""


@dataclass
class Checkpoint:
    format: str  # "pyth" | "pyslowfast" | "torchvision" | "caffe2" | "safetensors" | "videozoo"
    state_dict: dict[str, Tensor]
    source: str
    model_name: str | None = None
    class_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise CheckpointError(f"{src}: no such checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{src}: the file is empty (an interrupted download?)")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return _from_torch_object(_torch_load(path), src)
    if _looks_like_safetensors(path, head, size):
        return _read_safetensors(path)
    if head[:1] == b"\x80":  # a pickle (protocol >= 2)
        data = path.read_bytes()
        try:
            first = load_data_pickle(data, src)
        except UnsafePickleError:
            raise
        except ValueError as e:
            raise CheckpointError(str(e)) from e
        if first == _TORCH_LEGACY_MAGIC:
            return _from_torch_object(_torch_load(path), src)
        return _from_caffe2_object(first, src)
    raise CheckpointError(
        f"{src}: not a checkpoint in a known format (expected a torch.save file, safetensors, "
        "or a Caffe2 pickle)"
    )


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(
            f"{path}: refused to load: the file holds objects other than tensors and plain data, "
            f"which could run code when unpickled; nothing in it was run ({str(e).splitlines()[0]})"
        ) from e
    except Exception as e:
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(e).__name__}: {e})") from e


def _looks_like_safetensors(path: Path, head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: damaged safetensors file ({e})") from e
    names = json.loads(meta["class_names"]) if "class_names" in meta else None
    return Checkpoint("safetensors", sd, str(path), meta.get("model"), names, extra=meta)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _from_torch_object(obj: Any, src: str) -> Checkpoint:
    if isinstance(obj, dict) and obj.get("videozoo") == 1:
        return Checkpoint(
            "videozoo", dict(obj["state_dict"]), src, obj.get("model"), obj.get("class_names"),
            extra={k: v for k, v in obj.items() if k not in ("state_dict", "class_names", "model")},
        )
    if isinstance(obj, dict) and "model_state" in obj:
        sd = obj["model_state"]
        if not _is_tensor_dict(sd):
            raise CheckpointError(f"{src}: 'model_state' is not a dict of tensors")
        keys = list(sd)
        if all(k.startswith("model.") for k in keys):
            sd = {k[len("model."):]: v for k, v in sd.items()}
            keys = list(sd)
        pyslowfast = any(k.startswith(("s1.", "s1_fuse.")) for k in keys)
        return Checkpoint("pyslowfast" if pyslowfast else "pyth", dict(sd), src)
    if isinstance(obj, dict) and "state_dict" in obj and _is_tensor_dict(obj["state_dict"]):
        return Checkpoint("torchvision", dict(obj["state_dict"]), src)
    if _is_tensor_dict(obj):
        return Checkpoint("torchvision", dict(obj), src)
    raise CheckpointError(f"{src}: a torch file, but not a state dict or a known checkpoint layout")


def _from_caffe2_object(obj: Any, src: str) -> Checkpoint:
    import numpy as np

    blobs = obj.get("blobs") if isinstance(obj, dict) else None
    if not isinstance(blobs, dict):
        raise CheckpointError(f"{src}: a pickle, but not a Caffe2 checkpoint (no 'blobs' dict)")
    sd: dict[str, Tensor] = {}
    for name, value in blobs.items():
        # Optimizer state and bookkeeping travel in the same dict; only model blobs are kept.
        if name.endswith("_momentum") or name in ("lr", "model_iter") or not isinstance(value, np.ndarray):
            continue
        sd[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32).copy())
    if not sd:
        raise CheckpointError(f"{src}: the Caffe2 checkpoint holds no weight blobs")
    return Checkpoint("caffe2", sd, src)


def save_checkpoint(
    path: str | os.PathLike,
    state_dict: dict[str, Tensor],
    *,
    model_name: str | None = None,
    class_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights atomically: `.safetensors` by extension, a torch.save file otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        meta = {"format": "pt"}
        if model_name:
            meta["model"] = model_name
        if class_names is not None:
            meta["class_names"] = json.dumps(list(class_names))
        save_file(sd, str(tmp), metadata=meta)
    else:
        obj: dict[str, Any] = {"videozoo": 1, "model": model_name, "state_dict": sd, "class_names": class_names}
        obj.update(extra or {})
        torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
