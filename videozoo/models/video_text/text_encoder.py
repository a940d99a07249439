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
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def _quick_gelu(x: Tensor) -> Tensor:
    # CLIP's sigmoid approximation of GELU, which the checkpoints were trained with.
    return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"quick_gelu": _quick_gelu, "gelu": F.gelu}


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_size {dim} is not a multiple of num_attention_heads {heads}")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x (N, L, D); mask (N or 1, 1, L, L) additive, 0 where a query may attend a key.
        n, length, dim = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(n, length, self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)), mask)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, dim))


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {act!r} is not supported (one of {sorted(_ACTIVATIONS)})")
        self.act = _ACTIVATIONS[act]
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-LayerNorm: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = _SelfAttention(cfg.hidden_size, cfg.num_attention_heads)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = _MLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipTextEncoder(nn.Module):
    """`forward(input_ids, attention_mask)` -> text embeddings (N, projection_dim), not normalised."""

    def __init__(self, cfg: TextConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or TextConfig()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.layers = nn.ModuleList(_Block(cfg) for _ in range(cfg.num_hidden_layers))
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
        neg = torch.finfo(x.dtype).min
        mask = torch.full((length, length), neg, dtype=x.dtype, device=x.device).triu(1)[None, None]
        if attention_mask is not None:
            padding = (attention_mask[:, None, None, :] == 0).to(x.device)
            mask = mask.masked_fill(padding, neg)
        for layer in self.layers:
            x = layer(x, mask)
        x = self.final_layer_norm(x)
        pooled = x[torch.arange(n, device=x.device), input_ids.argmax(dim=-1)]
        return x, pooled

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.text_projection(self.encode(input_ids, attention_mask)[1])


# ---------------------------------------------------------------------------------------------------
# The official transformers layout


_LAYER_KEY = re.compile(r"text_model\.encoder\.layers\.(\d+)\.(.+)")


def official_to_module_key(key: str) -> str | None:
    """Where an official text-side key goes in `ClipTextEncoder`; None for keys of other parts."""
    if key == "text_projection.weight":
        return key
    if not key.startswith("text_model."):
        return None
    if key.startswith("text_model.embeddings."):
        return key[len("text_model.embeddings.") :]
    match = _LAYER_KEY.fullmatch(key)
    if match:
        return f"layers.{match.group(1)}.{match.group(2)}"
    return key[len("text_model.") :]


def place_text_weights(model: ClipTextEncoder, state_dict: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Copy the text-side tensors of an official state dict into `model`, every one or none.

    Fails, naming the keys, when a weight of the model has no tensor in the file, when a text-side
    tensor of the file has no place in the model, or when shapes differ. Keys of the video side and the
    prompt generator are left for their own loaders.
    """
    own = model.state_dict()
    placed: dict[str, Tensor] = {}
    unplaced, mismatched, wrong_shape = [], [], set()
    for key, tensor in state_dict.items():
        if key in _IGNORED_KEYS:
            continue
        target = official_to_module_key(key)
        if target is None:
            continue
        if target not in own:
            unplaced.append(key)
        elif tuple(own[target].shape) != tuple(tensor.shape):
            wrong_shape.add(target)
            mismatched.append(f"{key} {tuple(tensor.shape)} (expected {tuple(own[target].shape)})")
        else:
            placed[target] = tensor
    missing = [_official_name(k) for k in own if k not in placed and k not in wrong_shape]
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


def _official_name(module_key: str) -> str:
    if module_key == "text_projection.weight":
        return module_key
    if module_key.startswith(("token_embedding.", "position_embedding.")):
        return "text_model.embeddings." + module_key
    if module_key.startswith("layers."):
        return "text_model.encoder." + module_key
    return "text_model." + module_key


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
