"""A training run from start (or resumption) to the final model: the epochs and what follows each.

One call of :func:`train` runs a whole (or resumed) training job: set up the processes, the model
and its data (videozoo.train.setup), resume from the last checkpoint if asked (videozoo.train.resume),
then per epoch train (videozoo.train.epoch), validate (videozoo.train.validate), report and
checkpoint; at the end write the final model. Launched by ``torchrun`` (``WORLD_SIZE > 1``) every
epoch is split over the processes and gradients are averaged; only rank 0 writes files.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from videozoo.data.workers import WorkerStalled
from videozoo.jobs.rundir import (
    RunError,
    RunLock,
    data_sha256,
    identity,
    manifest_differences,
    prepare_out,
    write_manifest,
)
from videozoo.models.factory import save_model
from videozoo.models.registry import get_spec
from videozoo.train.config import TrainConfig
from videozoo.train.epoch import EpochSums, NonFiniteLoss, StopFlag, train_epoch
from videozoo.train.processes import Processes, setup_processes
from videozoo.train.report import RunReport, SkipWarnings, log
from videozoo.train.resume import (
    CHECKPOINT,
    RunPosition,
    load_resume_checkpoint,
    restore,
    save_training_checkpoint,
    seed_everything,
)
from videozoo.train.setup import TrainingSetup, check_readable, read_videos, set_up
from videozoo.train.validate import validate

FINAL_MODEL = "model.pth"
CONFIG_FILE = "config.yaml"


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path | None  # None when the run stopped early (SIGTERM)
    checkpoint_path: Path
    epochs_completed: int
    history: list[dict]  # one row per epoch, the columns of metrics.csv
    class_names: list[str]
    interrupted: bool = False
    skipped_videos: int = 0
    seconds: float = 0.0

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    def summary(self) -> str:
        """A few lines for the command line: where things are and how the last epoch went."""
        if self.interrupted:
            head = f"stopped after {self.epochs_completed} epoch(s); continue with --resume ({self.checkpoint_path})"
        else:
            head = f"trained {self.epochs_completed} epoch(s) in {self.seconds:.0f} s; model: {self.model_path}"
        last = self.final
        parts = [head]
        if last:
            line = f"epoch {last['epoch']}: train loss {last['train_loss']:.4f}, train acc {last['train_acc']:.1f}%"
            if last.get("val_acc") is not None and not math.isnan(last["val_acc"]):
                line += f", val loss {last['val_loss']:.4f}, val acc {last['val_acc']:.1f}%"
            parts.append(line)
        if self.skipped_videos:
            parts.append(f"{self.skipped_videos} undecodable video(s) skipped (see the warnings)")
        parts.append(f"metrics: {self.out_dir / 'metrics.csv'}")
        return "\n".join(parts)


def train(config: TrainConfig, *, on_step: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train (or fine-tune, or resume) as `config` says; see docs/training.md.

    `on_step(epoch, step)` is called after every optimizer step (epoch 0-based, step counted over
    the whole run).
    """
    config.validate()
    procs = setup_processes(config.device)
    trainer = _Trainer(config, procs, on_step)
    try:
        trainer.set_up()
        return trainer.run()
    finally:
        if trainer.lock is not None:
            trainer.lock.release()
        # DistributedDataParallel holds the process group: release it first, or gloo's threads may
        # be torn down in the wrong order at exit.
        if trainer.setup is not None:
            trainer.setup.ddp = None
        del trainer
        gc.collect()
        procs.release()


class _Trainer:
    def __init__(self, cfg: TrainConfig, procs: Processes, on_step: Callable[[int, int], None] | None):
        self.cfg = cfg
        self.procs = procs
        self.on_step = on_step
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / CHECKPOINT
        self.warnings = SkipWarnings()
        self.setup: TrainingSetup | None = None
        self.lock: RunLock | None = None

    def set_up(self) -> None:
        cfg, procs = self.cfg, self.procs
        get_spec(cfg.model)  # an unknown name fails before anything is written
        if procs.main:
            prepare_out(self.out)
            self.lock = RunLock(self.out, wait=cfg.wait).acquire()
        procs.barrier()
        first_run = []
        if cfg.resume and self.ckpt_path.exists():
            first_run = manifest_differences(self.out, self._identity(), job="train")
        resume = load_resume_checkpoint(cfg, self.ckpt_path, procs, also=first_run)
        seed_everything(cfg.seed)
        videos = read_videos(cfg)
        if cfg.check_videos:
            check_readable(videos.train, videos.class_names, enabled_log=procs.main)
        if resume is not None and resume.class_names != videos.class_names:
            raise ValueError(f"{self.ckpt_path}: trained on other classes than {cfg.data} now holds")
        self.setup = set_up(cfg, procs, videos)
        if resume is None and procs.main:
            # After set_up: published weights are in the cache now, so their file's hash is known.
            write_manifest(self.out, self._identity(), job="train", about={"weights": cfg.weights, "data": cfg.data})
        self.start = restore(resume, self.setup) if resume is not None else RunPosition()
        self.skipped_total = self.start.skipped_total
        self.report = RunReport(
            self.out,
            enabled=procs.main,
            tensorboard=cfg.tensorboard,
            plot=cfg.plot,
            history=self.start.history,
            resume_step=self.setup.schedule.step,
        )
        if procs.main:
            cfg.save(self.out / CONFIG_FILE)

    def _identity(self) -> dict:
        cfg = self.cfg
        return identity(
            model=cfg.model,
            weights=cfg.weights,
            data_sha=data_sha256(cfg.data),
            val_data_sha256=data_sha256(cfg.val_data) if cfg.val_data else None,
            classes_sha256=data_sha256(cfg.classes) if cfg.classes else None,
            precision=cfg.precision,
        )

    def run(self) -> TrainResult:
        cfg, procs, run = self.cfg, self.procs, self.setup
        assert run is not None, "set_up() first"
        t_start = time.perf_counter()
        interrupted = False
        epochs_done = self.start.epoch
        with StopFlag() as stop:
            for epoch in range(self.start.epoch, cfg.epochs):
                resumed = epoch == self.start.epoch
                try:
                    end = train_epoch(
                        run,
                        epoch,
                        skip_batches=self.start.batch if resumed else 0,
                        sums=self.start.partial if resumed else EpochSums(),
                        stop=stop,
                        report=self.report,
                        warnings=self.warnings,
                        on_step=self.on_step,
                    )
                except NonFiniteLoss as e:
                    self.report.close()
                    kept = (
                        f"the last good checkpoint, {self.ckpt_path} (epoch {epochs_done}), is kept"
                        if self.ckpt_path.exists()
                        else "no checkpoint was written yet"
                    )
                    raise RunError(
                        f"{e}; {kept}, and no {FINAL_MODEL} is written. A lower learning rate "
                        "(--lr) or --clip-grad-norm may help"
                    ) from e
                sums = end.sums
                if end.stalled is not None:
                    raise self._stalled(end.stalled, epoch, end.batch, sums)
                if end.interrupted:
                    self._checkpoint(epoch, end.batch, sums)
                    interrupted = True
                    log(
                        f"stopped by SIGTERM in epoch {epoch + 1} after step {run.schedule.step}; "
                        f"{self.ckpt_path} saved, continue with --resume",
                        enabled=procs.main,
                    )
                    break
                try:
                    self._end_epoch(epoch, sums)
                except WorkerStalled as e:  # in validation: the epoch's training is kept
                    raise self._stalled(e, epoch, end.batch, sums) from None
                self._checkpoint(epoch + 1, 0, EpochSums())
                epochs_done = epoch + 1
                if procs.any(stop.requested):
                    interrupted = epoch + 1 < cfg.epochs
                    if interrupted:
                        log(f"stopped by SIGTERM after epoch {epoch + 1}; continue with --resume", enabled=procs.main)
                    break

        model_path = None
        if not interrupted and procs.main:
            try:
                model_path = save_model(
                    run.model,
                    self.out / FINAL_MODEL,
                    training=cfg.to_dict(),
                    extra={"metrics": self.report.rows[-1] if self.report.rows else {}},
                )
            except OSError as e:
                raise RunError(
                    f"{self.out / FINAL_MODEL}: cannot write ({e.strerror or e}); {self.ckpt_path} "
                    "holds the trained weights: free space and continue with --resume"
                ) from e
            log(f"saved {model_path}", enabled=True)
        self.report.close()
        procs.barrier()
        return TrainResult(
            out_dir=self.out,
            model_path=model_path,
            checkpoint_path=self.ckpt_path,
            epochs_completed=epochs_done,
            history=list(self.report.rows),
            class_names=list(run.class_names),
            interrupted=interrupted,
            skipped_videos=self.skipped_total,
            seconds=time.perf_counter() - t_start,
        )

    def _end_epoch(self, epoch: int, sums: EpochSums) -> None:
        """Validate (every `val_every` epochs and after the last), then the epoch's row and log line."""
        cfg, procs, run = self.cfg, self.procs, self.setup
        assert run is not None
        t_val = time.perf_counter()
        last = epoch + 1 == cfg.epochs
        val_loss, val_acc = (
            validate(run, self.warnings) if (last or (epoch + 1) % cfg.val_every == 0) else (math.nan, math.nan)
        )
        loss, correct, samples, skipped = procs.sum([sums.loss, sums.correct, sums.samples, sums.skipped])
        seconds = sums.seconds + time.perf_counter() - t_val
        self.skipped_total += int(skipped)
        row = {
            "epoch": epoch + 1,
            "lr": sums.lr,
            "train_loss": loss / max(samples, 1),
            "train_acc": 100.0 * correct / max(samples, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": seconds,
            "samples_per_s": samples / max(sums.seconds, 1e-9),
            "skipped_videos": int(skipped),
        }
        self.report.add_epoch(row, run.schedule.step)
        val_text = f", val loss {val_loss:.4f} acc {val_acc:.1f}%" if not math.isnan(val_acc) else ""
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.1f}%"
            f"{val_text}, lr {sums.lr:.4g}, {seconds:.1f} s, {row['samples_per_s']:.1f} samples/s"
            + (f", {int(skipped)} video(s) skipped" if skipped else ""),
            enabled=procs.main,
        )

    def _stalled(self, stalled: WorkerStalled, epoch: int, batch: int, sums: EpochSums) -> RunError:
        """Save where the run is (one process: no collective can wait on a stalled peer) and say so."""
        self.report.close()
        if self.procs.world_size == 1:
            self._checkpoint(epoch, batch, sums)
            kept = f"{self.ckpt_path} saved (epoch {epoch + 1}, batch {batch})"
        elif self.ckpt_path.exists():
            kept = f"the last checkpoint, {self.ckpt_path}, is kept"
        else:
            kept = "no checkpoint was written yet"
        return RunError(f"{stalled}; the run stopped: {kept}. Fix or remove the video, then continue with --resume")

    def _checkpoint(self, epoch: int, batch: int, partial: EpochSums) -> None:
        assert self.setup is not None
        position = RunPosition(epoch, batch, partial, self.skipped_total, self.report.rows)
        try:
            save_training_checkpoint(self.ckpt_path, self.setup, position)
        except OSError as e:
            kept = (
                f"the previous {self.ckpt_path.name} is kept" if self.ckpt_path.exists() else "no checkpoint is written"
            )
            raise RunError(
                f"{self.ckpt_path}: cannot write ({e.strerror or e}) after epoch {epoch}, batch {batch}; "
                f"{kept}: free space and continue with --resume"
            ) from e
