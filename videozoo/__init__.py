"""videozoo: pretrained video action recognition models, their input pipelines, and the jobs around them."""
from videozoo.factory import create_model, kinetics400_classes
from videozoo.registry import get_spec, list_models

__version__ = "0.1.0"

__all__ = ["create_model", "get_spec", "kinetics400_classes", "list_models", "__version__"]
