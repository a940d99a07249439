"""Zero-shot classification: top-k over labels written at run time, with a video-text model (X-CLIP).

The labels are put into a prompt template ("a video of {}."), their text embeddings are computed once
for the label set (`XClip.set_labels`), and every video then runs through the engine like a classifier
over those labels: the same views, batching, precision and result objects as `predict`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from videozoo.engine import Engine
from videozoo.models.base import VideoClassifier

DEFAULT_MODEL = "xclip_b16_zero_shot"
DEFAULT_TEMPLATE = "a video of {}."


def parse_labels(labels: str | Sequence[str] | None = None, labels_file: str | os.PathLike | None = None) -> list[str]:
    """The label set from a comma-separated string (or a list), or a file of one label per line.

    Surrounding spaces are dropped, as are empty entries and blank lines; labels must be distinct.
    """
    if (labels is None) == (labels_file is None):
        raise ValueError("give the labels either inline (a,b,c) or as a file of one label per line, not both")
    if labels_file is not None:
        items = Path(labels_file).read_text(encoding="utf-8").splitlines()
    elif isinstance(labels, str):
        items = labels.split(",")
    else:
        items = list(labels or ())
    out = [item.strip() for item in items if item.strip()]
    if not out:
        raise ValueError("no labels given")
    repeated = sorted({label for label in out if out.count(label) > 1})
    if repeated:
        raise ValueError(f"labels given more than once: {', '.join(repeated)}")
    return out


def check_template(template: str) -> str:
    """A prompt template must hold one `{}` where the label goes."""
    if template.count("{}") != 1 or template.replace("{}", "").count("{") or template.replace("{}", "").count("}"):
        raise ValueError(
            f"the prompt template must hold exactly one {{}} for the label (and no other braces): {template!r}"
        )
    return template


def is_zero_shot(model: str | VideoClassifier) -> bool:
    """True for a video-text model (classes are labels given at run time), by registry name or model."""
    if isinstance(model, str):
        from videozoo.models.registry import get_spec

        return not get_spec(model).cls.has_classifier
    return not getattr(model, "has_classifier", True)


def check_labels_for(model: str | VideoClassifier, labels: object | None) -> bool:
    """Whether `model` takes `labels` (a video-text model needs them, a classifier refuses them)."""
    zero_shot = is_zero_shot(model)
    name = model if isinstance(model, str) else getattr(model, "model_name", type(model).__name__)
    if zero_shot and labels is None and getattr(model, "labels", None):
        return False  # a model given with its label set (set_labels): a classifier over those labels
    if zero_shot and labels is None:
        raise ValueError(
            f"{name}: a video-text model scores labels written at run time: give them with --labels a,b,c "
            "or --labels-file FILE"
        )
    if not zero_shot and labels is not None:
        raise ValueError(
            f"--labels: {name} is a classifier with fixed classes; labels written at run time take a "
            "video-text model (xclip_*)"
        )
    return zero_shot


def zero_shot_engine(
    model: str | VideoClassifier = DEFAULT_MODEL,
    labels: str | Sequence[str] = (),
    *,
    template: str = DEFAULT_TEMPLATE,
    weights: str | os.PathLike | None = "default",
    **engine_args: Any,
) -> Engine:
    """An engine that scores videos over `labels` (each put into `template`) with a video-text model.

    model: a registry name (created with `weights`) or a model from `create_model`.
    engine_args: views, device, precision, batch_size, threads (as `Engine`).
    """
    from videozoo.models.factory import create_model

    owned = isinstance(model, str)
    built = create_model(model, weights=weights) if isinstance(model, str) else model
    set_labels = getattr(built, "set_labels", None)
    if built.has_classifier or set_labels is None:
        raise ValueError(
            f"{built.model_name}: a classifier with fixed classes; zero-shot classification takes a "
            "video-text model (xclip_*)"
        )
    # The text side runs here, once for the label set; the engine then only runs the video side.
    set_labels(parse_labels(labels), template=check_template(template))
    return Engine(built, inplace=owned, **engine_args)


# The engine runs the model once when it is made (to size its batches), and X-CLIP's forward pass
# scores a label set: where the labels come later (embeddings, a server's requests), this one stands in.
_STAND_IN = ["a video."]


def video_text_engine(
    model: str | VideoClassifier,
    *,
    weights: str | os.PathLike | None = "default",
    **engine_args: Any,
) -> Engine:
    """An engine of a video-text model whose labels are given later (:func:`relabel`), or never (its
    features: the normalised video embeddings). It runs with torch (a compiled graph would fix the labels)."""
    from videozoo.models.factory import create_model

    if not is_zero_shot(model):
        name = model if isinstance(model, str) else getattr(model, "model_name", "the model")
        raise ValueError(f"{name}: a classifier with fixed classes, not a video-text model (xclip_*)")
    owned = isinstance(model, str)
    built = create_model(model, weights=weights) if isinstance(model, str) else model
    built.set_labels(_STAND_IN)  # type: ignore[operator]
    engine = Engine(built, inplace=owned, backend="torch", **engine_args)
    engine.class_names = None
    return engine


def relabel(engine: Engine, labels: Sequence[str], template: str = DEFAULT_TEMPLATE) -> Engine:
    """`engine` (of :func:`video_text_engine` or :func:`zero_shot_engine`) scoring over `labels`: the model's
    label set is replaced (the last few sets stay embedded) and a copy of the engine names the labels.

    The model is shared with `engine`: one caller at a time (a server's worker runs one job at a time).
    """
    labels = parse_labels(labels)
    engine.model.set_labels(labels, template=check_template(template))  # type: ignore[union-attr]
    other = copy.copy(engine)
    other.class_names = list(labels)
    return other


def classify(
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    model: str | VideoClassifier = DEFAULT_MODEL,
    labels: str | Sequence[str] = (),
    *,
    template: str = DEFAULT_TEMPLATE,
    weights: str | os.PathLike | None = "default",
    views: str = "1x1",
    top_k: int = 5,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """Top-k labels of each video: one `predict --json` object per video, in order.

    labels: "a,b,c" or a list; template: the prompt each label is put into.
    A video that cannot be decoded gets an object with its `error` instead of `top_k`.
    """
    engine = zero_shot_engine(
        model, labels, template=template, weights=weights, views=views, device=device, precision=precision
    )
    paths = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    return list(entries(engine, paths, top_k=top_k, workers=0))


def entries(
    engine: Engine, paths: Sequence[str | os.PathLike], *, top_k: int, workers: int
) -> Iterator[dict[str, Any]]:
    """The `predict --json` object of each video (top-k limited to the number of labels)."""
    k = min(top_k, len(engine.class_names or ()))
    for result in engine.map(paths, workers=workers):
        if result.error is not None or result.prediction is None:
            yield {
                "video": result.path,
                "model": engine.model_name,
                "views": str(engine.plan),
                "precision": engine.precision.name,
                "error": result.error,
            }
        else:
            yield result.prediction.entry(engine.model_name, top_k=k)
