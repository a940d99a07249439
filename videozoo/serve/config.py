"""What a server serves and how: the models with their weights, limits, workers, precision, device."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_MODEL = "motion_tiny"  # the embedded model: works offline out of the box
DEFAULT_WEIGHTS = "default"  # each model's own default weights
MAX_VIEWS = 30  # the most views one request may ask for (10x3, the largest published protocol)


@dataclass(frozen=True)
class ServedModel:
    """One model kept warm: its registry name and weights (a key such as "default", a path, or None)."""

    name: str
    weights: str | None = DEFAULT_WEIGHTS


@dataclass(frozen=True)
class ServeConfig:
    models: tuple[ServedModel, ...] = (ServedModel(DEFAULT_MODEL),)
    workers: int = 1  # inference threads, each with one replica of every model
    max_queue: int = 16  # requests waiting beyond the ones running
    max_upload_mb: float = 200.0
    precision: str = "auto"
    device: str = "cpu"
    views: str = "1x1"  # the default of the `views` field
    top_k: int = 5  # the default of the `top_k` field
    max_views: int = MAX_VIEWS
    threads: int | None = None  # the model's intra-op threads per worker (default: the cores shared out)
    decoder_threads: int | None = None  # FFmpeg threads per video (default: `threads`' count)
    # A temporary folder is made inside this one (default: TMPDIR, else the system's).
    temp_root: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("serve at least one model")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"--model: each model once, got {', '.join(names)}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.max_queue < 0:
            raise ValueError(f"--max-queue must be 0 or more, got {self.max_queue}")
        if not self.max_upload_mb > 0:
            raise ValueError(f"--max-upload-mb must be more than 0, got {self.max_upload_mb}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def default_model(self) -> str:
        return self.models[0].name

    def intra_op_threads(self) -> int:
        """Each worker's share of the cores (the workers run at once; oversubscribing slows all)."""
        if self.threads is not None:
            return self.threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // self.workers)
