"""The model a run trains and the clip it trains on: the config's overrides over the registry entry.

The clip settings (frames, rate, sizes) replace the entry's InputConfig fields; the architecture
arguments (`arch`, `dropout`, and the clip length and training crop that fix the head's pooling
window) are laid over the entry's, or over a pretrained checkpoint's recorded ones.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch.nn as nn

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.factory import model_from_checkpoint
from videozoo.models.spec import ModelSpec
from videozoo.train.config import TrainConfig
from videozoo.weights import hub
from videozoo.weights.checkpoint import read_checkpoint


def resolve_input(base: InputConfig, cfg: TrainConfig) -> InputConfig:
    """The model's InputConfig with the config's clip overrides applied.

    ``crop_size`` sets the training crop too unless ``train_crop_size`` is given; a new
    ``short_side`` scales the training jitter range (or the fixed torchvision resize) with it.
    """
    changes: dict[str, Any] = {}
    for name in ("num_frames", "sampling_rate", "fps", "short_side"):
        if getattr(cfg, name) is not None:
            changes[name] = getattr(cfg, name)
    if cfg.crop_size is not None:
        changes["crop_size"] = cfg.crop_size
        changes["train_crop_size"] = cfg.crop_size
    if cfg.train_crop_size is not None:
        changes["train_crop_size"] = cfg.train_crop_size
    if cfg.short_side is not None:
        ratio = base.train_jitter[1] / base.train_jitter[0]
        changes["train_jitter"] = (cfg.short_side, int(round(cfg.short_side * ratio)))
        if base.resize is not None:
            changes["resize"] = (cfg.short_side, int(round(cfg.short_side * base.resize[1] / base.resize[0])))
    if cfg.train_jitter is not None:
        changes["train_jitter"] = (int(cfg.train_jitter[0]), int(cfg.train_jitter[1]))
    out = dataclasses.replace(base, **changes)
    train_short = min(out.resize) if out.resize is not None else out.train_jitter[0]
    eval_short = min(out.resize) if out.resize is not None else out.short_side
    if out.train_crop_size > train_short:
        raise ValueError(
            f"the training crop {out.train_crop_size} is larger than the smallest short side {train_short}"
        )
    if out.crop_size > eval_short:
        raise ValueError(f"the eval crop {out.crop_size} is larger than the eval short side {eval_short}")
    return out


def arch_overrides(spec: ModelSpec, cfg: TrainConfig, input_config: InputConfig) -> dict[str, Any]:
    """Keyword arguments to lay over the registry's (or a pretrained checkpoint's) arch: the config's
    `arch`, plus the clip length and training crop where the family class takes them (they fix the
    head's pooling window, and must be the clip's whatever the checkpoint was trained on)."""
    params = inspect.signature(spec.cls.__init__).parameters
    accepted = [p for p in params if p not in ("self", "num_classes")]
    overrides = dict(cfg.arch)
    if cfg.dropout is not None:
        overrides["dropout"] = cfg.dropout
    if "num_frames" in params and "num_frames" not in overrides:
        overrides["num_frames"] = input_config.num_frames
    if "crop_size" in params and "crop_size" not in overrides:
        overrides["crop_size"] = input_config.train_crop_size
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(
            f"{spec.name} ({spec.cls.__name__}) takes no argument(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted)}"
        )
    # YAML gives lists where the classes take tuples (e.g. temporal kernels per stage).
    return {k: _tuples(v) for k, v in overrides.items()}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def build_model(
    spec: ModelSpec, cfg: TrainConfig, overrides: dict[str, Any], class_names: list[str]
) -> tuple[VideoClassifier, str]:
    """The model to train and a line saying where its weights come from.

    Pretrained weights are loaded into the checkpoint's architecture with the overrides laid over
    it; the classifier is replaced unless the checkpoint's class names are exactly the dataset's.
    """
    choice = spec.resolve_weights(cfg.weights)
    if choice.random:
        model = spec.build(num_classes=len(class_names), **overrides)
        return model, "random initialisation"
    path = hub.fetch(spec.weights[choice.key]) if choice.key is not None else choice.path
    assert path is not None
    model = model_from_checkpoint(spec, read_checkpoint(path), arch=overrides)
    pretrained = list(model.class_names) if model.class_names is not None else None
    if pretrained == list(class_names):
        return model, f"{cfg.weights} (classifier kept: same {len(class_names)} classes)"
    model.reset_classifier(len(class_names))
    was = len(pretrained or []) or model.num_classes
    return model, f"{cfg.weights} (new classifier for {len(class_names)} classes, was {was})"


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode; with `freeze_bn` the BatchNorm layers stay in eval mode (running statistics fixed)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
