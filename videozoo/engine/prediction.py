"""The result of scoring one video: per-view and per-video scores, and the JSON entry of it.

Scoring follows the official protocol: the softmax at every head position, averaged over the
positions (``VideoClassifier.scores``), then averaged over the views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Prediction:
    video: str
    scores: Tensor  # (K,) mean over views of the per-view scores
    view_scores: Tensor  # (V, K)
    class_names: list[str] | None
    views: str  # the plan, e.g. "10x3"
    precision: str  # what the forward pass ran in
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def label(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)

    def top_k(self, k: int = 5) -> list[dict[str, Any]]:
        probs, idx = self.scores.topk(min(k, self.scores.numel()))
        return [
            {"label": self.label(i), "index": int(i), "probability": float(p)}
            for p, i in zip(probs.tolist(), idx.tolist(), strict=True)
        ]

    def entry(self, model: str, top_k: int = 5) -> dict[str, Any]:
        """The object `videozoo predict --json` prints for this video (and the server returns)."""
        return {
            "video": self.video,
            "model": model,
            "views": self.views,
            "precision": self.precision,
            "top_k": self.top_k(top_k),
            "seconds": round(self.seconds, 3),
            **self.info,
        }
