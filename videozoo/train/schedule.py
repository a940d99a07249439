"""Learning-rate schedules, stepped once per optimizer step.

The rate at step ``s`` (0-based, ``E`` steps per epoch) is ``lr * warmup(s) * decay(s)``:

* ``warmup(s)`` rises linearly from ``warmup_factor`` to 1 over the first ``W = warmup_epochs * E``
  steps (``warmup_factor + (1 - warmup_factor) * s / W``), then stays 1; as torchvision's
  ``LinearLR(start_factor=warmup_factor, total_iters=W)``.
* ``decay(s)`` is 1 during the warm-up; then, for ``"step"``, ``gamma ** k`` with ``k`` the number
  of milestone epochs ``m`` with ``s >= m * E`` (the reference's ``MultiStepLR`` placed after the
  warm-up, so milestones count from the start of training); for ``"cosine"``,
  ``(1 + cos(pi * (s - W) / (T - W))) / 2`` with ``T = epochs * E`` total steps (``CosineAnnealingLR``
  down to 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScheduleSpec:
    steps_per_epoch: int
    epochs: int
    warmup_epochs: float = 10.0
    warmup_factor: float = 0.001
    kind: str = "step"
    milestones: tuple[int, ...] = (20, 30)
    gamma: float = 0.1

    def factor(self, step: int) -> float:
        """The multiplier of the peak learning rate at optimizer step `step`."""
        e = self.steps_per_epoch
        warmup_steps = self.warmup_epochs * e
        if step < warmup_steps:
            return self.warmup_factor + (1.0 - self.warmup_factor) * step / warmup_steps
        if self.kind == "step":
            passed = sum(1 for m in self.milestones if step >= m * e)
            return self.gamma**passed
        if self.kind == "cosine":
            total = self.epochs * e
            span = max(total - warmup_steps, 1)
            progress = min((step - warmup_steps) / span, 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"unknown schedule {self.kind!r}; expected 'step' or 'cosine'")


class LRSchedule:
    """Sets the optimizer's learning rates for each step from a ScheduleSpec and the peak rate(s).

    Call :meth:`apply` before a step and :meth:`advance` after it; the state is the step count.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, spec: ScheduleSpec, peak_lr: float):
        self.optimizer = optimizer
        self.spec = spec
        self.peak_lr = peak_lr
        self.step = 0

    @property
    def lr(self) -> float:
        return self.peak_lr * self.spec.factor(self.step)

    def apply(self) -> float:
        """Set every group's rate (the scheduled rate times the group's `lr_scale`, 1 if absent: layer-wise
        decay); return the scheduled rate."""
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def advance(self) -> None:
        self.step += 1

    def state_dict(self) -> dict:
        return {"step": self.step, "peak_lr": self.peak_lr}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
