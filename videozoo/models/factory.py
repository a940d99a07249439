"""`create_model`: a registry name (and optionally weights) in, a ready model out; and back to a file.

A model made here carries what its checkpoint records (see videozoo.weights.meta): `model_name`,
`arch` (the family-class arguments it was built with, set by ModelSpec.build), `input_config` and
`class_names`. :func:`checkpoint_meta` reads them into a CheckpointMeta and :func:`save_model`
writes weights and record together, so the file rebuilds the same model.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.classes import kinetics400_classes
from videozoo.models.base import VideoClassifier
from videozoo.models.registry import get_spec
from videozoo.models.spec import ModelSpec
from videozoo.weights import hub
from videozoo.weights.checkpoint import Checkpoint, CheckpointError, read_checkpoint, save_checkpoint
from videozoo.weights.meta import CheckpointMeta


def create_model(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    progress: bool | None = None,
) -> VideoClassifier:
    """Build the model `name`.

    weights: None (or "none") for random initialisation; "default" for the entry's default weights
    (`spec.default_weights`: "kinetics400" for the published models, the packaged file for
    motion_tiny); "kinetics400" (or another key of the entry's weight sources) for those weights,
    from the package, the cache or downloaded once; or the path of a local checkpoint in any
    supported format (detected from its content). The same words as every `--weights` flag
    (`ModelSpec.resolve_weights`).
    A videozoo checkpoint rebuilds the architecture, clip settings and class names it records.
    num_classes: a different count from the weights' replaces the classifier (for fine-tuning).
    The model has `class_names` (a list, or None when unknown) and is returned in eval mode.
    """
    spec = get_spec(name)
    choice = spec.resolve_weights(weights)
    if choice.random:
        model = spec.build(num_classes=num_classes)
        model.model_name = spec.name
        model.input_config = spec.input
        model.class_names = None
        if spec.class_names is not None and (num_classes or spec.num_classes) == len(spec.class_names):
            model.class_names = list(spec.class_names)
        elif (num_classes or spec.num_classes) == 400:
            model.class_names = list(kinetics400_classes())
        return model.eval()
    path = hub.fetch(spec.weights[choice.key], progress=progress) if choice.key is not None else choice.path
    assert path is not None
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(spec, ckpt, num_classes=num_classes)


def model_from_checkpoint(
    spec: ModelSpec,
    ckpt: Checkpoint,
    *,
    num_classes: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> VideoClassifier:
    """The model `spec` with the checkpoint's weights, rebuilt as the checkpoint's record says.

    arch: family-class arguments laid over the recorded ones (a training run's own overrides).
    """
    meta = ckpt.meta
    if meta is not None and meta.model != spec.name:
        raise CheckpointError(f"{ckpt.source}: holds weights of {meta.model!r}, not {spec.name!r}")
    state = spec.cls.convert_checkpoint(ckpt.format, ckpt.state_dict, source=ckpt.source)
    if not spec.cls.has_classifier:
        return _labelless_from_checkpoint(spec, ckpt, state, num_classes=num_classes, arch=arch)
    head_key = f"{spec.cls.classifier_name}.weight"
    if head_key not in state:
        raise CheckpointError(f"{ckpt.source}: no classifier weight {head_key!r}; is this a checkpoint of {spec.name}?")
    file_classes = state[head_key].shape[0]
    if spec.head_rows is not None and meta is None:
        state = _select_head_rows(spec, state, ckpt.source)
    ckpt_classes = state[head_key].shape[0]
    if meta is not None and meta.num_classes is not None and meta.num_classes != ckpt_classes:
        raise CheckpointError(
            f"{ckpt.source}: videozoo_meta.num_classes is {meta.num_classes}, but the classifier has {ckpt_classes} outputs"
        )
    recorded = dict(meta.arch) if meta is not None else {}
    _check_arch(spec, recorded, ckpt.source)
    if ckpt.config is not None:
        # A publisher's config describes the architecture of the weights beside it: it must be the
        # one this entry builds (the family says which fields matter and how they map).
        built = {**_full_arch(spec, {**recorded, **(arch or {})}), "num_classes": file_classes}
        spec.cls.check_config(ckpt.config, built, source=ckpt.source)
    # Built on the meta device: no time spent on a random initialisation that the checkpoint
    # overwrites, and the checkpoint's tensors become the model's own (no second copy).
    with torch.device("meta"):
        model = spec.build(num_classes=ckpt_classes, **{**recorded, **(arch or {})})
    load_state_strict(model, state, ckpt.source, assign=True)
    class_names = list(meta.class_names) if meta is not None and meta.class_names is not None else None
    if class_names is None and ckpt.config is not None:
        class_names = config_class_names(ckpt.config, ckpt_classes, source=ckpt.source)
    if class_names is None and ckpt_classes == 400:
        class_names = list(kinetics400_classes())
    if class_names is not None and len(class_names) != ckpt_classes:
        raise CheckpointError(f"{ckpt.source}: {len(class_names)} class names for {ckpt_classes} classes")
    if num_classes is not None and num_classes != ckpt_classes:
        model.reset_classifier(num_classes)
        class_names = None
    model.class_names = class_names
    model.model_name = spec.name
    model.input_config = meta.input if meta is not None and meta.input is not None else spec.input
    return model.eval()


def config_class_names(config: Mapping[str, Any], classes: int, *, source: str) -> list[str] | None:
    """The class names a transformers config.json gives in `id2label` ({"0": name, ...}), or None
    where it has none or only the placeholders transformers writes for unnamed classes
    ("LABEL_0", ...). A table that does not name exactly the classifier's outputs is an error."""
    table = config.get("id2label")
    if table is None:
        return None
    where = f"{source}/config.json"
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise CheckpointError(f"{where}: id2label must map class indices to names")
    try:
        by_index = {int(k): v for k, v in table.items()}
    except ValueError:
        raise CheckpointError(f"{where}: id2label keys must be class indices, got {sorted(table)[:3]}") from None
    if sorted(by_index) != list(range(classes)):
        raise CheckpointError(f"{where}: id2label names {len(by_index)} classes, not indices 0..{classes - 1}")
    names = [by_index[i] for i in range(classes)]
    if names == [f"LABEL_{i}" for i in range(classes)]:
        return None
    return names


def _labelless_from_checkpoint(
    spec: ModelSpec,
    ckpt: Checkpoint,
    state: dict[str, Tensor],
    *,
    num_classes: int | None,
    arch: Mapping[str, Any] | None,
) -> VideoClassifier:
    """A model without a classifier layer (classes given as text at run time): the weights, checked
    against the publisher's config where one comes with them, and no class names."""
    if num_classes:
        raise ValueError(
            f"{spec.name}: has no classifier to give {num_classes} outputs (a video-text model's classes are "
            "text labels; an encoder gives features)"
        )
    meta = ckpt.meta
    recorded = dict(meta.arch) if meta is not None else {}
    _check_arch(spec, recorded, ckpt.source)
    built = {**recorded, **(arch or {})}
    if ckpt.config is not None:
        spec.cls.check_config(ckpt.config, _full_arch(spec, built), source=ckpt.source)
    with torch.device("meta"):
        model = spec.build(**built)
    load_state_strict(model, state, ckpt.source, assign=True)
    model.model_name = spec.name
    model.input_config = meta.input if meta is not None and meta.input is not None else spec.input
    model.class_names = None
    return model.eval()


def _full_arch(spec: ModelSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Every argument the family class will be built with: its defaults, the entry's, the overrides."""
    params = inspect.signature(spec.cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    defaults.pop("num_classes", None)
    return {**defaults, **spec.arch, **overrides}


def _select_head_rows(spec: ModelSpec, state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """The publisher's classifier cut to the entry's classes: row j of the result is row
    `spec.head_rows[j]` of the file's (e.g. Kinetics-400's classes among a Kinetics-710 head's)."""
    assert spec.head_rows is not None
    rows = torch.tensor(spec.head_rows)
    prefix = spec.cls.classifier_name
    have = state[f"{prefix}.weight"].shape[0]
    if int(rows.max()) >= have:
        raise CheckpointError(
            f"{source}: the classifier has {have} outputs; {spec.name} takes rows up to {int(rows.max())} of it"
        )
    state = dict(state)
    for part in ("weight", "bias"):
        key = f"{prefix}.{part}"
        if key in state:
            state[key] = state[key].index_select(0, rows)
    return state


def _check_arch(spec: ModelSpec, arch: Mapping[str, Any], source: str) -> None:
    params = inspect.signature(spec.cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(arch) - (set(params) - {"self", "num_classes"}))
    if unknown:
        raise CheckpointError(
            f"{source}: videozoo_meta.arch: {spec.cls.__name__} ({spec.name}) takes no argument(s) {', '.join(unknown)}"
        )


def checkpoint_meta(model: VideoClassifier, *, training: Mapping[str, Any] | None = None) -> CheckpointMeta:
    """The record of `model` as create_model (or a training run) made it; `training`: its settings."""
    name = getattr(model, "model_name", None)
    if not name:
        raise ValueError("the model carries no registry name (`model_name`); create it with videozoo.create_model")
    spec = get_spec(name)
    # A video-text model's classes are labels given at run time, not part of its weights.
    classifier = model.has_classifier
    names = getattr(model, "class_names", None) if classifier else None
    return CheckpointMeta(
        model=name,
        arch=dict(getattr(model, "arch", None) or spec.arch),
        input=getattr(model, "input_config", None) or spec.input,
        class_names=tuple(names) if names is not None else None,
        num_classes=model.num_classes if classifier else None,
        training=training,
    )


def save_model(
    model: VideoClassifier,
    path: str | os.PathLike,
    *,
    training: Mapping[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model`'s weights with its record (`.safetensors` by extension, a torch file otherwise)."""
    return save_checkpoint(path, model.state_dict(), meta=checkpoint_meta(model, training=training), extra=extra)


def load_state_strict(model: nn.Module, state: dict[str, Tensor], source: str, *, assign: bool = False) -> None:
    """Load `state` into `model`, or list every missing, unexpected and mis-shaped key in one error.

    assign: the state's tensors become the model's (for a model built on the meta device).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        problems = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
        for title, items in problems:
            if items:
                parts.append(f"{len(items)} {title}:\n    " + "\n    ".join(items))
        raise CheckpointError(f"{source}: does not fit {type(model).__name__}:\n  " + "\n  ".join(parts))
    with torch.no_grad():
        model.load_state_dict({k: _as_parameter(v, own[k].dtype) for k, v in state.items()}, assign=assign)
    if assign:
        left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
        if left:
            raise CheckpointError(
                f"{source}: {type(model).__name__} has tensors no checkpoint can fill: {', '.join(left)}"
            )


def _as_parameter(value: Tensor, dtype: torch.dtype) -> Tensor:
    """A checkpoint tensor laid out as a freshly built parameter is: contiguous and 64-byte aligned.

    Taken over as the model's own (``assign``), a tensor inside a file's buffer may sit at any
    8-byte offset; oneDNN then picks other convolution kernels, which round differently, and two
    loads of the same weights from two formats would not give identical outputs.
    """
    if value.is_floating_point():
        value = value.to(dtype)
    if not value.is_contiguous() or value.data_ptr() % 64:
        value = value.contiguous() if not value.is_contiguous() else value.clone()
    return value
