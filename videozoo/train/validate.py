"""Validation during training: loss and top-1 accuracy on the centred clip and centre crop ("1x1").

Each process scores its own share of the validation videos; the sums are added over processes, so
the figures are those of one process scoring them all. Undecodable videos are left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from videozoo.engine.precision import precision_context
from videozoo.train.data import to_device
from videozoo.train.report import SkipWarnings
from videozoo.train.setup import TrainingSetup


@torch.no_grad()
def validate(run: TrainingSetup, warnings: SkipWarnings) -> tuple[float, float]:
    """(mean loss, accuracy in %) over the validation videos; NaNs without any."""
    if run.val_set is None:
        return math.nan, math.nan
    run.model.eval()
    loss_sum = correct = count = 0.0
    for batch in run.loader(run.val_set):
        if batch.skipped:
            warnings.note(batch.skipped)
        if batch.inputs is None:
            continue
        labels = batch.labels.to(run.device)
        with precision_context(run.cfg.precision, run.device):
            logits = run.model(to_device(batch.inputs, run.device)).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
        count += len(batch)
    loss_sum, correct, count = run.procs.sum([loss_sum, correct, count])
    if count == 0:
        return math.nan, math.nan
    return loss_sum / count, 100.0 * correct / count
