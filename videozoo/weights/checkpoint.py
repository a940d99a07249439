"""Reading and writing checkpoint files, whatever their format, without running code from them.

Formats are told apart by content, not by file name:
- safetensors: an 8-byte header length followed by a JSON header.
- torch.save zip archives (and the legacy torch pickle): loaded with `weights_only=True`. Inside:
  pytorchvideo model-zoo `{'model_state': ...}`, PySlowFast `{'model_state': ...}` with
  `s1.pathway0_stem...` names (optionally prefixed `model.`), torchvision bare state dicts, and
  videozoo's own `{'videozoo': 2, 'state_dict': ..., 'videozoo_meta': {...}, ...}`.
- the Caffe2 pickle of video-nonlocal-net: `{'blobs': {name: ndarray}}`, read by a data-only
  unpickler.
- DeepSpeed containers `{'module': state_dict}` (VideoMAE V2's published `.pth`, stored float16):
  format "deepspeed", upcast to float32 as read.
- a transformers directory (given as the folder): `config.json` beside `model.safetensors`,
  `pytorch_model.bin`, or their sharded forms with an `.index.json`: format "transformers", with the
  parsed config as `Checkpoint.config` for the family to check against its architecture.

videozoo's own files carry a :class:`~videozoo.weights.meta.CheckpointMeta` (in `.safetensors`
files as JSON under the header metadata key `videozoo_meta`), restored as `Checkpoint.meta`. Files
written before that record existed (`{'videozoo': 1, 'model': ..., 'class_names': ...}` with `arch`
and `input` entries, or safetensors with `model`/`class_names` metadata) are read into one too.
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

from videozoo.weights.errors import CheckpointError
from videozoo.weights.meta import RECORD_VERSION, CheckpointMeta
from videozoo.weights.safe_pickle import UnsafePickleError, load_data_pickle

__all__ = ["Checkpoint", "CheckpointError", "CheckpointMeta", "read_checkpoint", "save_checkpoint"]

# The layout of videozoo's torch.save dict: 1 before the record existed, 2 with `videozoo_meta`.
_TORCH_LAYOUT = 2
_TORCH_RESERVED = ("videozoo", "state_dict", "videozoo_meta")


@dataclass
class Checkpoint:
    # "pyth" | "pyslowfast" | "torchvision" | "caffe2" | "safetensors" | "videozoo" | "deepspeed" | "transformers"
    format: str
    state_dict: dict[str, Tensor]
    source: str
    meta: CheckpointMeta | None = None  # videozoo's record; None for other publishers' files
    # Other entries of a videozoo torch file (the training state of `checkpoint_last.pth`, metrics).
    extra: dict[str, Any] = field(default_factory=dict)
    # The publisher's architecture description (a transformers directory's config.json); the
    # family checks it against the registry entry before anything is built.
    config: dict[str, Any] | None = None

    @property
    def model_name(self) -> str | None:
        return self.meta.model if self.meta is not None else None

    @property
    def class_names(self) -> list[str] | None:
        if self.meta is None or self.meta.class_names is None:
            return None
        return list(self.meta.class_names)


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The weights and record of a checkpoint file in any supported format (told apart by content).

    Weights that are not all finite (NaN or infinite values) are refused, naming the tensors.
    """
    ckpt = _read(Path(path))
    _check_finite(ckpt)
    return ckpt


def _check_finite(ckpt: Checkpoint) -> None:
    bad = []
    for name, t in ckpt.state_dict.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            nan = int(torch.isnan(t).sum())
            inf = int(torch.isinf(t).sum())
            bad.append(f"{name} ({nan} NaN, {inf} infinite of {t.numel()} values)")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"{ckpt.source}: refused: {len(bad)} tensor(s) hold values that are not finite: {shown} "
            "(weights of a diverged training run, or a damaged file)"
        )


def _read(path: Path) -> Checkpoint:
    src = str(path)
    if path.is_dir():
        return _read_transformers_dir(path)
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
        f"{src}: not a checkpoint in a known format (expected a torch.save file, safetensors, or a Caffe2 pickle)"
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


# The weight files a transformers directory may hold, in the order transformers itself prefers them.
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _read_transformers_dir(path: Path) -> Checkpoint:
    src = str(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{src}: a folder without config.json; a transformers directory holds config.json and "
            f"{' or '.join(_TRANSFORMERS_WEIGHTS)}"
        )
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    for name in _TRANSFORMERS_WEIGHTS:
        single, index = path / name, path / f"{name}.index.json"
        if single.is_file():
            files = [single]
        elif index.is_file():
            files = _shards(index, path)
        else:
            continue
        sd: dict[str, Tensor] = {}
        for file in files:
            part = _read(file)
            if part.format not in ("safetensors", "torchvision") or part.meta is not None:
                raise CheckpointError(f"{file}: not a plain state dict (read as {part.format})")
            clash = sorted(set(sd) & set(part.state_dict))
            if clash:
                raise CheckpointError(f"{file}: keys also in another shard: {', '.join(clash[:5])}")
            sd.update(part.state_dict)
        return Checkpoint("transformers", sd, src, config=config)
    raise CheckpointError(f"{src}: config.json but no weights ({' or '.join(_TRANSFORMERS_WEIGHTS)})")


def _shards(index: Path, folder: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a shard index with a weight_map ({e})") from e
    outside = [n for n in names if not isinstance(n, str) or Path(n).name != n]
    if outside:
        raise CheckpointError(f"{index}: shard names must be files of the folder, not {outside[:3]}")
    files = [folder / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{index}: shards missing: {', '.join(missing)}")
    return files


def _looks_like_safetensors(path: Path, head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open

    src = str(path)
    try:
        with safe_open(src, framework="pt") as f:
            header = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: damaged safetensors file ({e})") from e
    meta: CheckpointMeta | None
    if "videozoo_meta" in header:
        meta = CheckpointMeta.from_json(header["videozoo_meta"], source=src)
    elif header.get("model"):
        # Written before the record: the model name and the class names only.
        try:
            names = json.loads(header["class_names"]) if "class_names" in header else None
        except ValueError as e:
            raise CheckpointError(f"{src}: the class_names metadata is not valid JSON ({e})") from e
        meta = _legacy_meta(src, model=header["model"], class_names=names)
    else:
        meta = None
    return Checkpoint("safetensors", sd, src, meta)


def _legacy_meta(
    src: str, *, model: Any, class_names: Any, arch: Any = None, input: Any = None, training: Any = None
) -> CheckpointMeta | None:
    """The record of a file written before it existed (its `arch` were overrides of the registry's)."""
    if not model:
        return None
    return CheckpointMeta.from_dict(
        {
            "record": RECORD_VERSION,
            "model": model,
            "arch": arch or {},
            "input": input,
            "class_names": class_names,
            "num_classes": len(class_names) if isinstance(class_names, list) else None,
            "training": training,
            "videozoo_version": None,
        },
        source=src,
    )


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _from_torch_object(obj: Any, src: str) -> Checkpoint:
    if isinstance(obj, dict) and "videozoo" in obj:
        return _from_videozoo_object(obj, src)
    if isinstance(obj, dict) and "model_state" in obj:
        sd = obj["model_state"]
        if not _is_tensor_dict(sd):
            raise CheckpointError(f"{src}: 'model_state' is not a dict of tensors")
        keys = list(sd)
        if all(k.startswith("model.") for k in keys):
            sd = {k[len("model.") :]: v for k, v in sd.items()}
            keys = list(sd)
        pyslowfast = any(k.startswith(("s1.", "s1_fuse.")) for k in keys)
        return Checkpoint("pyslowfast" if pyslowfast else "pyth", dict(sd), src)
    if isinstance(obj, dict) and set(obj) == {"module"}:
        # DeepSpeed's container (VideoMAE V2). Mixed-precision training saved the weights as
        # float16; the models compute in float32, so they are upcast here, once.
        if not _is_tensor_dict(obj["module"]):
            raise CheckpointError(f"{src}: 'module' is not a dict of tensors")
        sd = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in obj["module"].items()}
        return Checkpoint("deepspeed", sd, src)
    if isinstance(obj, dict) and "state_dict" in obj and _is_tensor_dict(obj["state_dict"]):
        return Checkpoint("torchvision", dict(obj["state_dict"]), src)
    if _is_tensor_dict(obj):
        return Checkpoint("torchvision", dict(obj), src)
    raise CheckpointError(f"{src}: a torch file, but not a state dict or a known checkpoint layout")


def _from_videozoo_object(obj: dict, src: str) -> Checkpoint:
    layout = obj["videozoo"]
    if layout not in (1, _TORCH_LAYOUT):
        newer = isinstance(layout, int) and layout > _TORCH_LAYOUT
        why = "written by a newer videozoo" if newer else "not a layout this videozoo writes"
        raise CheckpointError(f"{src}: videozoo checkpoint layout {layout!r}: {why}")
    if not _is_tensor_dict(obj.get("state_dict")):
        raise CheckpointError(f"{src}: a videozoo checkpoint whose 'state_dict' is not a dict of tensors")
    if layout == 1:
        old = ("videozoo", "state_dict", "model", "class_names", "arch", "input", "config")
        meta = _legacy_meta(
            src,
            model=obj.get("model"),
            class_names=obj.get("class_names"),
            arch=obj.get("arch"),
            input=obj.get("input"),
            training=obj.get("config"),
        )
        return Checkpoint(
            "videozoo", dict(obj["state_dict"]), src, meta, {k: v for k, v in obj.items() if k not in old}
        )
    if "videozoo_meta" not in obj:
        raise CheckpointError(f"{src}: a videozoo checkpoint without its videozoo_meta record")
    meta = CheckpointMeta.from_dict(obj["videozoo_meta"], source=src)
    extra = {k: v for k, v in obj.items() if k not in _TORCH_RESERVED}
    return Checkpoint("videozoo", dict(obj["state_dict"]), src, meta, extra)


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
    meta: CheckpointMeta,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights and their record atomically: `.safetensors` by extension, a torch.save file otherwise.

    extra: further plain-data entries of a torch file (e.g. a training state); `Checkpoint.extra`
    when read back. Safetensors headers hold strings only, so they take none.
    """
    path = Path(path)
    if not isinstance(meta, CheckpointMeta):
        raise TypeError(f"{path}: meta must be a CheckpointMeta, not {type(meta).__name__}")
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_TORCH_RESERVED))
    if clash:
        raise ValueError(f"{path}: extra entries {', '.join(clash)} are reserved for the weights and their record")
    if extra and path.suffix == ".safetensors":
        raise ValueError(
            f"{path}: a safetensors file holds no extra entries ({', '.join(sorted(extra))}); write a .pth"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(sd, str(tmp), metadata={"format": "pt", "videozoo_meta": meta.to_json()})
        else:
            torch.save({"videozoo": _TORCH_LAYOUT, "state_dict": sd, "videozoo_meta": meta.to_dict(), **extra}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
