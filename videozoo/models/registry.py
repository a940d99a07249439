"""The model registry: one entry per model name, holding everything the toolkit knows about it.

An entry (:class:`~videozoo.models.spec.ModelSpec`) ties a name to its family class and
architecture arguments (the variant), the input the published weights expect, where those weights
live, and the figures published with them. The docs tables, `videozoo models`, `transform_for` and
`create_model` all read from here. Importing this module imports the families, which register
their variants; no model is built.
"""

from __future__ import annotations

import difflib

from videozoo.models import i3d_caffe2, i3d_inception, motion_tiny, mvit, resnet, s3d, slowfast, tv_resnet, x3d  # noqa: F401  (they register)
from videozoo.models.spec import SPECS, ModelSpec
from videozoo.models.transformers import mvit_v2, swin3d, timesformer, videomae, vivit, vjepa2  # noqa: F401  (register)
from videozoo.models.video_text import xclip  # noqa: F401  (registers)

_REGISTRY = SPECS


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.6)
        hint = (
            f" (did you mean {', '.join(close[:-1]) + ' or ' if len(close) > 1 else ''}{close[-1]}?)" if close else ""
        )
        raise KeyError(f"unknown model {name!r}{hint}; `videozoo models` lists them all") from None
