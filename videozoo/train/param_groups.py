"""The optimiser's parameter groups: layer-wise learning-rate decay and the weight-decay exemptions.

With ``layer_decay`` d < 1 the parameters are grouped as the BEiT / VideoMAE fine-tuning recipes
group them. The model numbers its layers (`VideoClassifier.layer_ids`: the patch embedding, position
tables and class token are layer 0, block i is layer i + 1, the final norm, probe and classifier are
layer depth + 1), and a parameter of layer l trains at ``lr * d ** (depth + 1 - l)``: the classifier
at the full rate, each block below it at d times the rate of the one above. Weight decay applies
only to the weights of linear and convolution layers; biases, norms, position tables and
class / query tokens are not decayed.

With d = 1 every trainable parameter is in one group at the full rate with the configured weight
decay, for every family (the CNNs' recipe).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from videozoo.models.base import VideoClassifier

_DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def check_layer_decay(value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"--layer-decay must be in (0, 1] (1 turns it off), got {value}")
    return value


def parameter_groups(
    model: VideoClassifier, *, weight_decay: float, layer_decay: float, model_name: str = ""
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups; each has `params`, `weight_decay`, `lr_scale` (the factor
    of the scheduled rate) and `layer` (its layer id, or None for the single group of d = 1)."""
    check_layer_decay(layer_decay)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layer_decay == 1:
        return [{"params": [p for _, p in trainable], "weight_decay": weight_decay, "lr_scale": 1.0, "layer": None}]
    ids = model.layer_ids()
    if ids is None:
        name = model_name or type(model).__name__
        raise ValueError(
            f"--layer-decay {layer_decay:g}: {name} ({type(model).__name__}) declares no layer structure "
            "(only the transformer families number their blocks); use --layer-decay 1"
        )
    top = max(ids.values())  # depth + 1
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, _DECAYED)}
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in trainable:
        layer, decay = ids[name], id(p) in decayed
        group = groups.setdefault(
            (layer, decay),
            {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (top - layer),
                "layer": layer,
            },
        )
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def describe_groups(groups: list[dict[str, Any]], layer_decay: float) -> str:
    """A clause for the run's log line: the decay and the lr scales of the bottom and top layers
    ("" without decay)."""
    if layer_decay == 1:
        return ""
    layers = sorted({g["layer"] for g in groups})
    scale = {g["layer"]: g["lr_scale"] for g in groups}
    undecayed = sum(p.numel() for g in groups if g["weight_decay"] == 0 for p in g["params"])
    return (
        f" with layer decay {layer_decay:g} over layers {layers[0]}..{layers[-1]} (lr x{scale[layers[0]]:.3g} at the "
        f"bottom, x{scale[layers[-1]]:.3g} at the top; {undecayed / 1e6:.3g} M parameters without weight decay)"
    )
