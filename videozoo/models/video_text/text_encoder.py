"""CLIP's text transformer as X-CLIP uses it, loaded from the official transformers layout.

Token ids (N, L) become one embedding per text (N, projection_dim): token + position embeddings, a stack
of causal pre-LayerNorm transformer blocks with quick-GELU MLPs, a final LayerNorm, the hidden state at
the end-of-text token, and a linear projection without bias into the space shared with the video side.

The official checkpoints (microsoft/xclip-*) are transformers directories: `config.json` (the text
hyper-parameters under `text_config`, `projection_dim` at the top) and `model.safetensors` or
`pytorch_model.bin` with the text tensors under `text_model.*` and `text_projection.weight`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from videozoo.models.layers import Block, causal_mask
from videozoo.models.transformers.hf_config import rename_clip_layers
from videozoo.weights.checkpoint import read_checkpoint
from videozoo.weights.errors import CheckpointError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Tensors of the text side in the official file that are not weights: an int64 arange of positions.
_IGNORED_KEYS = frozenset({"text_model.embeddings.position_ids"})


@dataclass(frozen=True)
class TextConfig:
    """The text hyper-parameters (transformers' XCLIPTextConfig names; its defaults where a file omits one)."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    projection_dim: int = 512

    @classmethod
    def from_xclip_config(cls, config: dict[str, Any]) -> TextConfig:
        """From an X-CLIP `config.json`: `text_config` and the top-level `projection_dim`."""
        text = dict(config.get("text_config") or {})
        if "projection_dim" in config:
            text["projection_dim"] = config["projection_dim"]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in text.items() if k in known})


class ClipTextEncoder(nn.Module):
    """`forward(input_ids, attention_mask)` -> text embeddings (N, projection_dim), not normalised."""

    def __init__(self, cfg: TextConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or TextConfig()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        # CLIP's layer is the shared pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x)).
        self.layers = nn.ModuleList(
            Block(
                cfg.hidden_size,
                cfg.num_attention_heads,
                cfg.intermediate_size,
                act=cfg.hidden_act,
                norm_eps=cfg.layer_norm_eps,
            )
            for _ in range(cfg.num_hidden_layers)
        )
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.text_projection = nn.Linear(cfg.hidden_size, cfg.projection_dim, bias=False)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`(hidden, pooled)`: the final-LayerNorm states (N, L, D) and those at the end token (N, D).

        The end token is found as the largest id of each row (49407 is the largest id), as the
        reference does. Each position attends to itself and the positions before it; padding (mask 0)
        is attended by no position.
        """
        n, length = input_ids.shape
        if length > self.cfg.max_position_embeddings:
            raise ValueError(f"{length} tokens, more than the {self.cfg.max_position_embeddings} positions")
        positions = torch.arange(length, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)
        mask = causal_mask(length, dtype=x.dtype, device=x.device)  # (1, 1, L, L)
        if attention_mask is not None:
            padding = (attention_mask[:, None, None, :] == 0).to(x.device)  # (N, 1, 1, L)
            mask = mask.masked_fill(padding, torch.finfo(x.dtype).min)  # (N, 1, L, L)
        for layer in self.layers:
            x = layer(x, mask)
        x = self.final_layer_norm(x)
        pooled = x[torch.arange(n, device=x.device), input_ids.argmax(dim=-1)]
        return x, pooled

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.text_projection(self.encode(input_ids, attention_mask)[1])


# ---------------------------------------------------------------------------------------------------
# The official transformers layout


def text_state_from_official(state: Mapping[str, Tensor], own_prefix: str = "") -> dict[str, Tensor]:
    """The text-side tensors of an official state dict under `ClipTextEncoder`'s names, after `own_prefix`.

    Keys of the other parts (video side, prompt generator, logit scale) and the int64 positions are
    left out. A text-side tensor of no known place keeps its file name, so that loading names it.
    """
    text = {
        k: v
        for k, v in state.items()
        if (k.startswith("text_model.") or k == "text_projection.weight") and k not in _IGNORED_KEYS
    }
    text = rename_clip_layers(text, "text_model.encoder.layers.", own_prefix + "layers.")
    out = {}
    for key, value in text.items():
        if key == "text_projection.weight":
            out[own_prefix + key] = value
        elif key.startswith("text_model.embeddings.") and key.count(".") == 3:
            out[own_prefix + key[len("text_model.embeddings.") :]] = value
        elif key.startswith("text_model.final_layer_norm."):
            out[own_prefix + key[len("text_model.") :]] = value
        else:
            out[key] = value
    return out


def place_text_weights(model: ClipTextEncoder, state: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Copy the text-side tensors of an official state dict into `model`, every one or none.

    Fails, naming the keys, when a weight of the model has no tensor in the file, when a text-side
    tensor of the file has no place in the model, or when shapes differ. Keys of the video side and the
    prompt generator are left for their own loaders.
    """
    own = model.state_dict()
    placed = text_state_from_official(state)
    missing = [k for k in own if k not in placed]
    unplaced = [k for k in placed if k not in own]
    mismatched = [
        f"{k} {tuple(placed[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in placed and tuple(placed[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} text weight(s): {', '.join(missing)}")
    if unplaced:
        problems.append(f"{len(unplaced)} text tensor(s) with no place in the model: {', '.join(unplaced)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) of the wrong shape: {', '.join(mismatched)}")
    if problems:
        raise CheckpointError(f"{source}: cannot load the X-CLIP text encoder: " + "; ".join(problems))
    with torch.no_grad():
        for target, tensor in placed.items():
            # Half-precision files are read into the float32 model.
            own[target].copy_(tensor.to(own[target].dtype))


def weight_file(directory: str | os.PathLike) -> Path:
    """The weights of a transformers directory: `model.safetensors`, else `pytorch_model.bin`."""
    root = Path(directory)
    for name in WEIGHT_FILES:
        if (root / name).is_file():
            return root / name
    raise CheckpointError(f"{root}: no {' or '.join(WEIGHT_FILES)} in this directory")


def load_text_encoder(directory: str | os.PathLike) -> ClipTextEncoder:
    """The text encoder of an X-CLIP transformers directory (`config.json` + weights), in eval mode."""
    root = Path(directory)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{root}: no config.json (an X-CLIP transformers directory holds one)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_path}: not readable as JSON ({e})") from e
    model = ClipTextEncoder(TextConfig.from_xclip_config(config))
    path = weight_file(root)
    place_text_weights(model, read_checkpoint(path).state_dict, str(path))
    return model.eval()
