"""videozoo: pretrained video action recognition models, their input pipelines, and the jobs around them."""
from videozoo.factory import create_model, kinetics400_classes
from videozoo.registry import get_spec, list_models
from videozoo.sampling import windows_for
from videozoo.transforms import transform_for

__version__ = "0.1.0"

__all__ = [
    "create_model", "get_spec", "kinetics400_classes", "list_models", "predict", "transform_for", "windows_for",
    "__version__",
]


def predict(video_path, model="slow_r50", weights="kinetics400", views="1x1", top_k=5, **kwargs):
    """Top-k (label, probability) of one video; see `videozoo.predictor.predict`."""
    from videozoo.predictor import predict as _predict

    return _predict(video_path, model, weights, views, top_k, **kwargs)
