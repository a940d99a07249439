"""The model registry: one entry per model name, holding everything the toolkit knows about it.

An entry (:class:`~videozoo.models.spec.ModelSpec`) ties a name to its family class and
architecture arguments (the variant), the input the published weights expect, where those weights
live, and the figures published with them. The docs tables, `videozoo models`, `transform_for` and
`create_model` all read from here. Importing this module imports the families, which register
their variants; no model is built.
"""
from __future__ import annotations

from videozoo.models import i3d_caffe2, motion_tiny, mvit, resnet, s3d, slowfast, tv_resnet, x3d  # noqa: F401  (they register)
from videozoo.models.spec import SPECS, ModelSpec

_REGISTRY = SPECS


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n]
        hint = f"; similar: {', '.join(sorted(close))}" if close else ""
        raise KeyError(f"unknown model {name!r}{hint}. `videozoo models` lists them all") from None
