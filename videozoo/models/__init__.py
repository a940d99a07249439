"""The model families. Importing a family module registers its variants."""
from videozoo.models import (  # noqa: F401
    i3d_caffe2,
    mvit,
    resnet,
    s3d,
    slowfast,
    tv_resnet,
    x3d,
)
from videozoo.models.base import VideoClassifier

__all__ = ["VideoClassifier"]
