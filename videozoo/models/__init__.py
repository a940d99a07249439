"""The model families, their registry and `create_model`."""

from videozoo.models.base import VideoClassifier

__all__ = ["VideoClassifier"]
