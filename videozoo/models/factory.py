"""`create_model`: a registry name (and optionally weights) in, a ready model out."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.classes import kinetics400_classes
from videozoo.models.base import VideoClassifier
from videozoo.data.input_config import InputConfig
from videozoo.models.spec import ModelSpec
from videozoo.models.registry import get_spec
from videozoo.weights import hub
from videozoo.weights.checkpoint import Checkpoint, CheckpointError, read_checkpoint


def create_model(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    progress: bool | None = None,
) -> VideoClassifier:
    """Build the model `name`.

    weights: None for random initialisation; "default" for the entry's default weights
    (`spec.default_weights`: "kinetics400" for the published models, the packaged file for
    motion_tiny); "kinetics400" (or another key of the entry's weight sources) for those weights,
    from the package, the cache or downloaded once; or the path of a local checkpoint in any
    supported format (detected from its content).
    num_classes: a different count from the weights' replaces the classifier (for fine-tuning).
    The model has `class_names` (a list, or None when unknown) and is returned in eval mode.
    """
    spec = get_spec(name)
    if weights is None:
        model = spec.build(num_classes=num_classes)
        model.model_name = spec.name
        model.input_config = spec.input
        model.class_names = None
        if spec.class_names is not None and (num_classes or spec.num_classes) == len(spec.class_names):
            model.class_names = list(spec.class_names)
        elif (num_classes or spec.num_classes) == 400:
            model.class_names = list(kinetics400_classes())
        return model.eval()

    if isinstance(weights, str):
        weights = spec.weights_key(weights)

    if isinstance(weights, str) and weights in spec.weights:
        source = spec.weights[weights]
        path = hub.fetch(source, progress=progress)
    elif isinstance(weights, str) and not os.path.sep in weights and not Path(weights).exists() and not weights.endswith(
        (".pth", ".pyth", ".pkl", ".pt", ".safetensors", ".ckpt")
    ):
        known = ", ".join(spec.weights) or "none"
        raise ValueError(f"{name}: unknown weights {weights!r} (published: {known}; or give a file path)")
    else:
        path = Path(weights)
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(spec, ckpt, num_classes=num_classes)


def model_from_checkpoint(spec: ModelSpec, ckpt: Checkpoint, *, num_classes: int | None = None) -> VideoClassifier:
    if ckpt.model_name and ckpt.model_name != spec.name:
        raise CheckpointError(f"{ckpt.source}: holds weights of {ckpt.model_name!r}, not {spec.name!r}")
    state = spec.cls.convert_checkpoint(ckpt.format, ckpt.state_dict, source=ckpt.source)
    head_key = f"{spec.cls.classifier_name}.weight"
    if head_key not in state:
        raise CheckpointError(
            f"{ckpt.source}: no classifier weight {head_key!r}; is this a checkpoint of {spec.name}?"
        )
    ckpt_classes = state[head_key].shape[0]
    # A checkpoint of a run with a resized architecture or clip carries both.
    arch = {k: _tuples(v) for k, v in (ckpt.extra.get("arch") or {}).items()}
    model = spec.build(num_classes=ckpt_classes, **arch)
    load_state_strict(model, state, ckpt.source)
    class_names = ckpt.class_names
    if class_names is None and ckpt_classes == 400:
        class_names = list(kinetics400_classes())
    if class_names is not None and len(class_names) != ckpt_classes:
        raise CheckpointError(f"{ckpt.source}: {len(class_names)} class names for {ckpt_classes} classes")
    if num_classes is not None and num_classes != ckpt_classes:
        model.reset_classifier(num_classes)
        class_names = None
    model.class_names = class_names
    model.model_name = spec.name
    saved_input = ckpt.extra.get("input")
    model.input_config = InputConfig(**{k: _tuples(v) for k, v in saved_input.items()}) if saved_input else spec.input
    return model.eval()


def _tuples(value):
    """Lists (as YAML and weights-only files store them) back to the tuples the builders take."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def load_state_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load `state` into `model`, or list every missing, unexpected and mis-shaped key in one error."""
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
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
            if items:
                parts.append(f"{len(items)} {title}:\n    " + "\n    ".join(items))
        raise CheckpointError(f"{source}: does not fit {type(model).__name__}:\n  " + "\n  ".join(parts))
    with torch.no_grad():
        model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()})
