"""Which views of a video a model sees: a typed plan, parsed once from the user's "10x3".

A plan is ``clips x crops``: ``clips`` windows spread over the video and ``crops`` spatial crops of
each. ``1x1`` is the model cards' quick look (one centred clip, centre crop); any other plan follows
the model family's test protocol (``InputConfig.clip_spacing``); ``published`` stands for the views
the model's accuracy was published with, and becomes concrete once a model's input config is known
(:meth:`ViewPlan.resolve`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from videozoo.data.input_config import InputConfig

_PLAN_RE = re.compile(r"^\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*$")
CROP_COUNTS = (1, 3)


class ViewPlanError(ValueError):
    """A views argument that is not a plan; the message says what a plan looks like."""


@dataclass(frozen=True)
class ViewPlan:
    clips: int = 1
    crops: int = 1
    # True for "published": the model's own test protocol, even where it is 1x1 (s3d's first clip).
    published: bool = False

    def __post_init__(self) -> None:
        if self.published and (self.clips, self.crops) == (0, 0):
            return  # not resolved yet
        if self.clips < 1:
            raise ViewPlanError(f"views need at least one clip, got {self.clips}x{self.crops}")
        if self.crops not in CROP_COUNTS:
            raise ViewPlanError(f"views take 1 or 3 crops per clip, got {self.clips}x{self.crops}")

    @classmethod
    def parse(cls, text: str | ViewPlan | tuple[int, int]) -> ViewPlan:
        """``"10x3"`` -> ``ViewPlan(10, 3)``; ``"published"`` -> an unresolved published plan."""
        if isinstance(text, ViewPlan):
            return text
        if isinstance(text, tuple):
            return cls(int(text[0]), int(text[1]))
        if not isinstance(text, str):
            raise ViewPlanError(f"views must be a string like '10x3', got {text!r}")
        if text.strip().lower() == "published":
            return cls(0, 0, published=True)
        m = _PLAN_RE.match(text)
        if m is None:
            raise ViewPlanError(f"views must look like CLIPSxCROPS (e.g. 1x1, 10x3) or 'published', got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def resolved(self) -> bool:
        return self.clips > 0

    def resolve(self, input_config: InputConfig) -> ViewPlan:
        """A concrete plan: ``published`` takes the config's ``test_clips x test_crops``."""
        if self.resolved:
            return self
        return ViewPlan(input_config.test_clips, input_config.test_crops, published=True)

    @property
    def single_view(self) -> bool:
        """The model cards' quick look: one centred clip, centre crop (never a published protocol)."""
        return not self.published and (self.clips, self.crops) == (1, 1)

    @property
    def num_views(self) -> int:
        return self.clips * self.crops

    def __str__(self) -> str:
        if not self.resolved:
            return "published"
        return f"{self.clips}x{self.crops}"
