"""A registry entry: a model name tied to its family class, variant arguments, input, weights and figures.

Family modules describe their variants with :func:`register`; :mod:`videozoo.models.registry`
imports the families and answers look-ups, so this module imports no family.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.weights.sources import WeightSource

#: What every `--weights` flag and `weights=` argument takes, in the same words everywhere.
WEIGHTS_HELP = (
    "default (the model's default weights: the official kinetics400 ones, or those packaged with "
    "videozoo, e.g. motion_tiny's), a published key such as kinetics400 (see `videozoo models`), "
    "a checkpoint path, or none (random initialisation)"
)
#: Words for random initialisation (any case); `None` means the same in Python.
RANDOM_WEIGHTS = ("none", "random")
# File endings that make an unknown word a path (a missing file then says so) rather than a key.
_CHECKPOINT_ENDINGS = (".pth", ".pyth", ".pkl", ".pt", ".safetensors", ".ckpt", ".onnx", ".bin")


def weights_word(value: str | os.PathLike | None) -> str | os.PathLike | None:
    """A weights choice in its one reading: ``none``/``random`` (any case) -> None, else unchanged."""
    if isinstance(value, str) and value.strip().lower() in RANDOM_WEIGHTS:
        return None
    return value


@dataclass(frozen=True)
class WeightsChoice:
    """Where a model's weights come from: a published `key`, a checkpoint `path`, or neither (random)."""

    key: str | None = None
    path: Path | None = None

    @property
    def random(self) -> bool:
        return self.key is None and self.path is None


@dataclass(frozen=True)
class Metrics:
    """Figures published with the weights; `source` says where they come from."""

    top1: float | None
    top5: float | None
    gflops: float | None  # per view, one multiply-add counted as one FLOP
    params_m: float | None
    views: str  # the test protocol the accuracy was measured with, e.g. "10x3"
    source: str
    flops_note: str | None = None  # why a computed figure may differ from the published one
    # The dataset top-1/top-5 were measured on (the table names any other than Kinetics-400's).
    dataset: str = "kinetics400"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    cls: type[VideoClassifier]
    arch: Mapping[str, Any]
    input: InputConfig
    weights: Mapping[str, WeightSource] = field(default_factory=dict)
    metrics: Metrics | None = None
    num_classes: int = 400
    description: str = ""
    paper: str = ""
    #: the key of `weights` that `weights="default"` means (the CLI's default)
    default_weights: str = "kinetics400"
    #: the class names of the default weights, where they are not Kinetics-400's
    class_names: tuple[str, ...] | None = None
    #: where the published classifier covers a superset of the entry's classes: the row of the
    #: published head for each of the entry's classes, in class order (applied to publishers' files)
    head_rows: tuple[int, ...] | None = None

    def weights_key(self, key: str) -> str:
        """`key` with "default" replaced by this entry's default weights key."""
        return self.default_weights if key.strip().lower() == "default" else key

    def resolve_weights(self, weights: str | os.PathLike | None) -> WeightsChoice:
        """The one reading of a weights choice (see :data:`WEIGHTS_HELP`) for this entry.

        ``default`` -> the entry's default key; ``none``/``random``/None -> random; a key of
        `weights` -> that key; anything else is a checkpoint path when it looks like one (it exists,
        holds a folder separator or ends as a checkpoint does); an unknown word is a ValueError
        listing the published keys.
        """
        weights = weights_word(weights)
        if weights is None:
            return WeightsChoice()
        if isinstance(weights, str):
            key = self.weights_key(weights)
            if key in self.weights:
                return WeightsChoice(key=key)
            if key != weights:  # "default" of an entry whose default key is not among its sources
                raise ValueError(f"{self.name}: its default weights {key!r} are not among its published ones")
            looks_like_path = (
                os.path.sep in weights or Path(weights).exists() or weights.lower().endswith(_CHECKPOINT_ENDINGS)
            )
            if not looks_like_path:
                known = ", ".join(self.weights) or "none"
                raise ValueError(
                    f"{self.name}: unknown weights {weights!r} (published: {known}; or default, none, "
                    "or a checkpoint path)"
                )
        return WeightsChoice(path=Path(weights))

    def build(self, *, num_classes: int | None = None, **overrides: Any) -> VideoClassifier:
        """The family class built with this entry's `arch`, `overrides` laid over it.

        The model keeps the arguments it was built with as `model.arch` (checkpoints record them).
        """
        kwargs = dict(self.arch)
        kwargs.update(overrides)
        model = self.cls(num_classes=num_classes or self.num_classes, **kwargs)
        model.arch = kwargs
        return model

    @property
    def is_two_pathway(self) -> bool:
        return self.input.slow_alpha is not None

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)


SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in SPECS:
        raise ValueError(f"model {spec.name!r} is registered twice")
    SPECS[spec.name] = spec
    return spec
