"""A small X-CLIP for tests: the fixture's keys at reduced widths, written in the official transformers
layout, and a registry entry `xclip_small` for it (2 frames of 32 x 32)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fixtures_util import TRANSFORMER_FIXTURES, deterministic_tensor, load_transformer_fixture, write_transformers_dir
from videozoo.models.registry import get_spec

FIXTURE = "xclip_b32_8f"

# Every size of the B/32 manifest and its counterpart in the small model (3 channels and the
# vocabulary and context stay, so that real labels can be tokenised).
_SMALL = {768: 16, 512: 8, 3072: 64, 2048: 32, 50: 5, 32: 16, 8: 2}
SMALL_CONFIG = {
    "model_type": "xclip",
    "projection_dim": 8,
    "prompt_layers": 1,
    "prompt_num_attention_heads": 2,
    "text_config": {
        "model_type": "xclip_text_model",
        "hidden_size": 8,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    },
    "vision_config": {
        "model_type": "xclip_vision_model",
        "hidden_size": 16,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "mit_hidden_size": 8,
        "mit_intermediate_size": 32,
        "mit_num_attention_heads": 2,
        "patch_size": 16,
        "num_frames": 2,
        "image_size": 32,
    },
}
SMALL_ARCH = {
    "num_frames": 2,
    "crop_size": 32,
    "patch_size": 16,
    "vision_dim": 16,
    "vision_depth": 1,
    "vision_heads": 2,
    "vision_mlp": 64,
    "mit_dim": 8,
    "mit_heads": 2,
    "mit_mlp": 32,
    "text_dim": 8,
    "text_depth": 1,
    "text_heads": 2,
    "text_mlp": 32,
    "projection_dim": 8,
    "prompt_layers": 1,
    "prompt_heads": 2,
}


def fixture() -> dict:
    if not (TRANSFORMER_FIXTURES / f"{FIXTURE}.json").is_file():
        pytest.skip(f"X-CLIP fixture not found under {TRANSFORMER_FIXTURES}")
    return load_transformer_fixture(FIXTURE)


def with_positions(state: dict[str, torch.Tensor], text: int, vision: int) -> dict[str, torch.Tensor]:
    # What the official file holds besides the weights: int64 aranges, to be ignored.
    return {
        **state,
        "text_model.embeddings.position_ids": torch.arange(text)[None],
        "vision_model.embeddings.position_ids": torch.arange(vision)[None],
    }


def small_state(fx: dict) -> dict[str, torch.Tensor]:
    out = {}
    for key, shape, kind in fx["state_dict"]:
        if ".layers." in key and ".layers.0." not in key or "decoder.1." in key:
            continue
        out[key] = deterministic_tensor(key, [_SMALL.get(s, s) for s in shape], kind)
    return with_positions(out, 77, 5)


def register_small(monkeypatch):
    """Register `xclip_small` (undone with the monkeypatch)."""
    from videozoo.models import spec as spec_module

    spec = get_spec("xclip_b32_8f")
    small = spec.replace(
        name="xclip_small",
        arch=SMALL_ARCH,
        input=dataclasses.replace(
            spec.input, num_frames=2, sampling_rate=4, crop_size=32, short_side=32, train_crop_size=32
        ),
    )
    monkeypatch.setitem(spec_module.SPECS, "xclip_small", small)
    return small


def write_small(folder: Path, weights: str = "model.safetensors") -> str:
    """The small model's official directory (config.json and the weights file)."""
    return str(write_transformers_dir(folder, SMALL_CONFIG, small_state(fixture()), weights=weights))
