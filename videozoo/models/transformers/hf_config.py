"""Checking a transformers directory's config.json against the architecture a registry entry builds.

A family lists the config fields that shape the network, each with the family argument it sets,
how the value converts, and the default transformers assumes when the field is absent. Every
field of the file must be one of those, a field that only matters for training or pre-training
(named by the family), or one that every transformers config carries (below); anything else is an
error, so a config the family does not understand is never half-read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from videozoo.weights.errors import CheckpointError

# Written by transformers into any config; none of them changes the network's computation.
GENERIC_FIELDS = frozenset(
    {
        "_name_or_path",
        "architectures",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "id2label",
        "label2id",
        "num_labels",
        "problem_type",
        "initializer_range",
        "return_dict",
        "output_hidden_states",
        "output_attentions",
        "torchscript",
        "use_bfloat16",
        "pruned_heads",
        "tie_word_embeddings",
        "chunk_size_feed_forward",
        "finetuning_task",
        "is_encoder_decoder",
        "is_decoder",
        "add_cross_attention",
        "_attn_implementation_autoset",
    }
)


@dataclass(frozen=True)
class Field:
    """A config field that sets the family argument `arg` to `convert(value)`, or the arguments
    `arg` (a tuple) to the items of `convert(value)`."""

    arg: str | tuple[str, ...]
    hf_default: Any
    convert: Callable[[Any], Any] = lambda v: v


def check_hf_config(
    config: Mapping[str, Any],
    arch: Mapping[str, Any],
    *,
    source: str,
    model_type: str,
    fields: Mapping[str, Field],
    training_only: frozenset[str] = frozenset(),
    fixed: Mapping[str, Any] | None = None,
) -> None:
    """Raise CheckpointError listing every field of `config` that disagrees with `arch`.

    fixed: fields whose value the family supports only one of (e.g. num_channels 3).
    """
    where = f"{source}/config.json"
    problems = []
    if config.get("model_type") != model_type:
        raise CheckpointError(f"{where}: model_type is {config.get('model_type')!r}, expected {model_type!r}")
    fixed = dict(fixed or {})
    for key, value in config.items():
        if key == "model_type" or key in GENERIC_FIELDS or key in training_only:
            continue
        if key in fixed:
            if value != fixed[key]:
                problems.append(f"{key} is {value!r}; only {fixed[key]!r} is supported")
            continue
        if key not in fields:
            problems.append(f"{key} ({value!r}) is not a field this loader knows; it cannot be checked")
    for key, field in fields.items():
        value = config.get(key, field.hf_default)
        try:
            wanted = field.convert(value)
        except (TypeError, ValueError) as e:
            problems.append(f"{key} is {value!r}: {e}")
            continue
        args, values = (field.arg, wanted) if isinstance(field.arg, tuple) else ((field.arg,), (wanted,))
        wrong = [f"{a}={arch[a]!r}" for a, v in zip(args, values, strict=True) if _differs(v, arch[a])]
        if wrong:
            problems.append(f"{key} is {value!r}, but the registry entry builds {', '.join(wrong)}")
    if problems:
        raise CheckpointError(f"{where}: disagrees with the model:\n  " + "\n  ".join(problems))


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, float) or isinstance(b, float):
        return not (isinstance(a, (int, float)) and isinstance(b, (int, float))) or abs(a - b) > 1e-9 * abs(b)
    return bool(a != b)


def check_num_labels(config: Mapping[str, Any], classes: int, *, source: str) -> None:
    """A config's class count (num_labels or id2label) must match the classifier in the weights."""
    declared = config.get("num_labels", len(config["id2label"]) if isinstance(config.get("id2label"), dict) else None)
    if declared is not None and declared != classes:
        raise CheckpointError(
            f"{source}/config.json: declares {declared} classes, but the classifier in the weights has {classes}"
        )


# The ViT layer of transformers 4.x (VideoMAE, ViViT, TimeSformer), suffix by suffix, and the
# name of the same tensor in `videozoo.models.layers.Block`.
_VIT_LAYER = {
    "attention.attention.q_bias": "attn.q_bias",
    "attention.attention.v_bias": "attn.v_bias",
    "attention.attention.qkv.weight": "attn.qkv.weight",
    "attention.attention.qkv.bias": "attn.qkv.bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "intermediate.dense.weight": "mlp.fc1.weight",
    "intermediate.dense.bias": "mlp.fc1.bias",
    "output.dense.weight": "mlp.fc2.weight",
    "output.dense.bias": "mlp.fc2.bias",
    "layernorm_before.weight": "norm1.weight",
    "layernorm_before.bias": "norm1.bias",
    "layernorm_after.weight": "norm2.weight",
    "layernorm_after.bias": "norm2.bias",
}
_QKV = ("query", "key", "value")


def rename_vit_layers(
    state: Mapping[str, Any], hf_prefix: str, own_prefix: str, *, suffixes: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`state` with the 4.x ViT layers under `hf_prefix` (e.g. "videomae.encoder.layer.") renamed to
    Blocks under `own_prefix` ("blocks."); other keys are returned as they are.

    Separate query/key/value projections are stacked into the fused `qkv` (rows q | k | v), which
    computes the same three products. A layer holding only some of them, or biases for only some,
    keeps those under their file names: loading then lists them as unexpected and the fused
    tensor as missing, rather than filling the gap.
    suffixes: the family's own per-layer names, added to (or overriding) the ViT layer's.
    """
    table = {**_VIT_LAYER, **(suffixes or {})}
    out: dict[str, Any] = {}
    stacks: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in state.items():
        if not key.startswith(hf_prefix):
            out[key] = value
            continue
        index, _, suffix = key[len(hf_prefix) :].partition(".")
        parts = suffix.split(".")
        if len(parts) == 4 and parts[:2] == ["attention", "attention"] and parts[2] in _QKV:
            stacks.setdefault((index, parts[3]), {})[parts[2]] = (key, value)
            continue
        own = table.get(suffix)
        out[f"{own_prefix}{index}.{own}" if own and index.isdigit() else key] = value
    for (index, kind), found in stacks.items():
        if len(found) == 3:
            out[f"{own_prefix}{index}.attn.qkv.{kind}"] = torch.cat([found[n][1] for n in _QKV], dim=0)
        else:
            out.update(dict(found.values()))
    return out


# CLIP's encoder layer (CLIP, X-CLIP: text, vision and MIT layers), suffix by suffix, and the name
# of the same tensor in `videozoo.models.layers.Block`. Attention modules other than `self_attn`
# (X-CLIP's `message_attn`) keep their own name with the same inner renaming.
_CLIP_LAYER = {
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "self_attn.out_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_CLIP_QKV = ("q_proj", "k_proj", "v_proj")


def rename_clip_layers(
    state: Mapping[str, Any],
    hf_prefix: str,
    own_prefix: str,
    *,
    attentions: frozenset[str] = frozenset({"self_attn"}),
    keep: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """`state` with CLIP encoder layers under `hf_prefix` ("text_model.encoder.layers.") renamed to
    Blocks under `own_prefix` ("text.layers."); other keys are returned as they are.

    For each attention module named in `attentions`, `<attn>.{q,k,v}_proj.{weight,bias}` are stacked
    into `<attn>.qkv.*` (rows q | k | v) and `<attn>.out_proj` becomes `<attn>.proj`, with `self_attn`
    named `attn`. Modules in `keep` (X-CLIP's `message_fc`) move under `own_prefix` unrenamed. As in
    `rename_vit_layers`, an incomplete q/k/v set, or any tensor of no known part, keeps its file
    name, so that loading reports it instead of filling a gap.
    """
    out: dict[str, Any] = {}
    stacks: dict[tuple[str, str, str], dict[str, tuple[str, Any]]] = {}
    for key, value in state.items():
        if not key.startswith(hf_prefix):
            out[key] = value
            continue
        index, _, suffix = key[len(hf_prefix) :].partition(".")
        if not index.isdigit():
            out[key] = value
            continue
        module, _, kind = suffix.rpartition(".")
        attn, _, proj = module.rpartition(".")
        own_attn = "attn" if attn == "self_attn" else attn
        if attn in attentions and proj in _CLIP_QKV:
            stacks.setdefault((index, attn, kind), {})[proj] = (key, value)
            continue
        if module in _CLIP_LAYER:
            out[f"{own_prefix}{index}.{_CLIP_LAYER[module]}.{kind}"] = value
        elif attn in attentions and proj == "out_proj":
            out[f"{own_prefix}{index}.{own_attn}.proj.{kind}"] = value
        elif module in keep:
            out[f"{own_prefix}{index}.{module}.{kind}"] = value
        else:
            out[key] = value
    for (index, attn, kind), found in stacks.items():
        # Three projections of one width stack; anything else is left for loading to report.
        if len(found) == 3 and len({tuple(found[p][1].shape[1:]) for p in _CLIP_QKV}) == 1:
            own_attn = "attn" if attn == "self_attn" else attn
            out[f"{own_prefix}{index}.{own_attn}.qkv.{kind}"] = torch.cat([found[p][1] for p in _CLIP_QKV], dim=0)
        else:
            out.update(dict(found.values()))
    return out
