"""One training epoch: micro-batches, gradient accumulation, optimizer steps, and stopping on SIGTERM.

Batches are grouped `accumulate` at a time into one optimizer step (the last group of an epoch may
be shorter; each micro-batch's loss is weighted by 1 / group size). The learning rate is set at the
start of each group and the schedule advances after its step. A SIGTERM is acted on at a step
boundary: the epoch returns where it stopped, so the caller can checkpoint and resume exactly there.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from videozoo.data.workers import WorkerStalled
from videozoo.engine.precision import precision_context
from videozoo.jobs.rundir import RunError
from videozoo.train.data import Batch, to_device
from videozoo.train.model import set_train_mode
from videozoo.train.report import Progress, RunReport, SkipWarnings
from videozoo.train.setup import TrainingSetup


@dataclass
class EpochSums:
    """An epoch's running totals in this process (a checkpoint inside an epoch holds them)."""

    loss: float = 0.0  # summed over samples
    correct: float = 0.0
    samples: float = 0.0
    skipped: float = 0.0
    seconds: float = 0.0  # training time, without validation
    lr: float = 0.0  # of the latest step

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass
class EpochEnd:
    sums: EpochSums
    interrupted: bool  # stopped by SIGTERM before the epoch's last batch
    batch: int  # batches of the epoch done (where a resumed run continues)
    stalled: WorkerStalled | None = None  # a loader worker stopped for making no progress


class NonFiniteLoss(RunError):
    """The training loss became NaN or infinite; the step was not applied."""

    def __init__(self, message: str, *, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step


class StopFlag:
    """Set by SIGTERM; the loop checks it at every optimizer step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train_epoch(
    run: TrainingSetup,
    epoch: int,
    *,
    skip_batches: int,
    sums: EpochSums,
    stop: StopFlag,
    report: RunReport,
    warnings: SkipWarnings,
    on_step: Callable[[int, int], None] | None,
) -> EpochEnd:
    """Train epoch `epoch` (0-based) from batch `skip_batches` on, adding to `sums`."""
    cfg, procs = run.cfg, run.procs
    run.train_set.set_epoch(epoch)
    run.train_sampler.set_epoch(epoch)
    run.train_sampler.skip = skip_batches * cfg.batch_size
    loader = run.loader(run.train_set, run.train_sampler)
    num_batches = skip_batches + len(loader)
    set_train_mode(run.model, cfg.freeze_bn)
    progress = Progress(
        cfg.progress,
        enabled=procs.main,
        total=num_batches,
        epoch=epoch,
        epochs=cfg.epochs,
        log_every=cfg.log_every,
        initial=skip_batches,
    )
    t0 = time.perf_counter()
    seconds_before = sums.seconds
    batch_index = skip_batches
    diverged: float | None = None  # a non-finite loss in the current group
    at_group_start = copy.copy(sums)  # what a stop inside an accumulation group goes back to
    try:
        for batch in loader:
            position = batch_index % cfg.accumulate
            group_start = batch_index - position
            group_size = min(cfg.accumulate, num_batches - group_start)
            if position == 0:
                at_group_start = copy.copy(sums)
                sums.lr = run.schedule.apply()
                run.optimizer.zero_grad(set_to_none=True)
            if batch.skipped:
                warnings.note(batch.skipped)
                sums.skipped += len(batch.skipped)
            last_in_group = position == group_size - 1
            loss_sum, correct, n = _micro_step(run, batch, 1.0 / group_size, sync=last_in_group)
            if not math.isfinite(loss_sum) and diverged is None:
                diverged = loss_sum
            sums.loss += loss_sum
            sums.correct += correct
            sums.samples += n
            batch_index += 1
            progress.update(n * procs.world_size, loss_sum / max(n, 1), sums.lr)
            if not last_in_group:
                continue
            # Every process learns of a divergence in any, before the step would spread it to the weights.
            if procs.any(diverged is not None):
                step = run.schedule.step + 1
                value = "NaN" if diverged is None or math.isnan(diverged) else f"{diverged / max(n, 1):g}"
                raise NonFiniteLoss(
                    f"the training loss became {value} in epoch {epoch + 1}, step {step} (batch {batch_index} of "
                    "the epoch); the run stopped without applying that step",
                    epoch=epoch,
                    step=step,
                )
            diverged = None
            _optimizer_step(run)
            run.schedule.advance()
            report.add_step(run.schedule.step, loss_sum / max(n, 1), sums.lr)
            if on_step is not None:
                on_step(epoch, run.schedule.step)
            if procs.any(stop.requested) and batch_index < num_batches:
                sums.seconds = seconds_before + time.perf_counter() - t0
                return EpochEnd(sums, interrupted=True, batch=batch_index)
    except WorkerStalled as stalled:
        # The batches of an unfinished accumulation group are done again after --resume.
        done = batch_index - batch_index % cfg.accumulate
        kept = at_group_start if done < batch_index else sums
        kept.seconds = seconds_before + time.perf_counter() - t0
        return EpochEnd(kept, interrupted=True, batch=done, stalled=stalled)
    finally:
        progress.close()
    sums.seconds = seconds_before + time.perf_counter() - t0
    return EpochEnd(sums, interrupted=False, batch=batch_index)


def _micro_step(run: TrainingSetup, batch: Batch, weight: float, sync: bool) -> tuple[float, float, int]:
    """Forward and backward one micro-batch; (loss sum, correct, samples)."""
    net = run.ddp if run.ddp is not None else run.model
    # Gradients are all-reduced only on the group's last micro-batch.
    no_sync = run.ddp.no_sync() if (run.ddp is not None and not sync) else contextlib.nullcontext()
    with no_sync:
        if batch.inputs is None:
            if run.ddp is None:
                return 0.0, 0.0, 0
            # Every process must take part in the gradient all-reduce: a zero-weighted
            # forward in eval mode (BatchNorm statistics and dropout untouched).
            run.model.eval()
            with precision_context(run.cfg.precision, run.device):
                out = net(_placeholder_input(run))
            run.scaler.scale(out.float().sum() * 0.0).backward()
            set_train_mode(run.model, run.cfg.freeze_bn)
            return 0.0, 0.0, 0
        inputs = to_device(batch.inputs, run.device)
        labels = batch.labels.to(run.device, non_blocking=True)
        with precision_context(run.cfg.precision, run.device):
            logits = net(inputs)
        loss = run.criterion(logits.float(), labels)
        run.scaler.scale(loss * weight).backward()
    n = len(batch)
    correct = (logits.detach().argmax(dim=1) == labels).sum().item()
    return loss.item() * n, float(correct), n


def _placeholder_input(run: TrainingSetup):
    """One all-zero training clip: (1, 3, T, crop, crop), or [slow, fast] for two pathways."""
    c = run.input
    fast = torch.zeros(1, 3, c.num_frames, c.train_crop_size, c.train_crop_size, device=run.device)
    if c.slow_alpha:
        return [fast[:, :, :: c.slow_alpha].contiguous(), fast]
    return fast


def _optimizer_step(run: TrainingSetup) -> None:
    if run.cfg.clip_grad_norm is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
