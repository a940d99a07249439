"""videozoo: pretrained video action recognition models, their input pipelines, and the jobs around them.

The names below load on first use, so `import videozoo` stays cheap.
"""

from __future__ import annotations

from typing import Any

from videozoo.version import __version__

_LAZY = {
    "create_model": "videozoo.models.factory",
    "save_model": "videozoo.models.factory",
    "get_spec": "videozoo.models.registry",
    "list_models": "videozoo.models.registry",
    "kinetics400_classes": "videozoo.data.classes",
    "windows_for": "videozoo.data.sampling",
    "ViewPlan": "videozoo.data.plan",
    "Engine": "videozoo.engine",
    "timeline": "videozoo.jobs.timeline",
    "timeline_stream": "videozoo.jobs.timeline",
    "classify": "videozoo.jobs.classify",
    "embed": "videozoo.jobs.embed",
    "search": "videozoo.jobs.embed",
}

__all__ = [*_LAZY, "export", "predict", "transform_for", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "export":
        # The subpackage: importing it makes `videozoo.export` the package, which is callable.
        import importlib

        return importlib.import_module("videozoo.export")
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videozoo' has no attribute {name!r}")


def transform_for(model, views="1x1", train=False, *, generator=None):
    """The eval (or training) transform of a registry name, a registry entry or an InputConfig."""
    from videozoo.data import transforms
    from videozoo.models.registry import get_spec

    if isinstance(model, str):
        model = get_spec(model)
    return transforms.transform_for(model, views, train, generator=generator)


def predict(video_path, model="slow_r50", weights="default", views="1x1", top_k=5, **kwargs):
    """Top-k (label, probability) of one video; see `videozoo.engine.predict`.

    weights: "default" is the model's default weights (Kinetics-400's, or the packaged ones of
    motion_tiny), or a weights key, a checkpoint path, or None.
    """
    from videozoo.engine import predict as _predict

    return _predict(video_path, model, weights, views, top_k, **kwargs)
