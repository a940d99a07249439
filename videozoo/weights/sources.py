"""Where a published checkpoint lives and how to check it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightSource:
    """One downloadable checkpoint."""

    url: str
    format: str  # "pyth" | "torchvision" | "caffe2" | "pyslowfast" | "safetensors"
    sha256: str | None = None
    # Some publishers give only a hash prefix (torchvision puts 8 hex digits in the file name).
    sha256_prefix: str | None = None
    size: int | None = None
    num_classes: int = 400
    dataset: str = "kinetics400"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]
