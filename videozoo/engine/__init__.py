"""The inference engine: decode -> views -> batched forward -> scores, written once.

Every job (predict, evaluate, features, timeline, serve) runs its videos through
:class:`Engine`; see :mod:`videozoo.engine.engine`.
"""

from videozoo.data.plan import ViewPlan, ViewPlanError
from videozoo.engine.engine import Engine, VideoResult, resolve_device
from videozoo.engine.precision import Precision, resolve_precision
from videozoo.engine.prediction import Prediction
from videozoo.engine.views import VideoViews, load_views

__all__ = [
    "Engine",
    "Precision",
    "Prediction",
    "VideoResult",
    "VideoViews",
    "ViewPlan",
    "ViewPlanError",
    "load_views",
    "predict",
    "resolve_device",
    "resolve_precision",
]


def predict(video_path, model="slow_r50", weights="default", views="1x1", top_k=5, *, device="cpu", precision="auto"):
    """The top-k (label, probability) for one video (Kinetics-400 names, or the checkpoint's own)."""
    engine = (
        Engine.build(model, weights=weights, views=views, device=device, precision=precision)
        if isinstance(model, str)
        else Engine(model, views=views, device=device, precision=precision)
    )
    return [(r["label"], r["probability"]) for r in engine.predict(video_path).top_k(top_k)]
