"""Checkpoints of a run in progress, and resuming one exactly where it stopped.

`OUT/checkpoint_last.pth` is a videozoo checkpoint (weights and their record, with the run's
settings as the record's `training`) whose `train_state` entry holds the rest: the optimizer,
schedule and gradient-scaler states, the epoch and the batch reached inside it, the epoch's running
sums, the rows of metrics.csv so far, and every process's RNG states. Together with the per-sample
augmentation generators (a function of seed, epoch and index) a resumed run takes the same steps on
the same clips as an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videozoo.jobs.rundir import ResumeMismatchError
from videozoo.models.factory import save_model
from videozoo.train.config import TrainConfig, config_from_dict, resume_differences
from videozoo.train.epoch import EpochSums
from videozoo.train.processes import Processes
from videozoo.train.report import log
from videozoo.train.setup import TrainingSetup
from videozoo.weights.checkpoint import Checkpoint, CheckpointError, read_checkpoint

CHECKPOINT = "checkpoint_last.pth"


@dataclass
class RunPosition:
    """Where a run (re)starts: the epoch and batch, and what was counted before."""

    epoch: int = 0
    batch: int = 0  # batches of `epoch` already trained
    partial: EpochSums = field(default_factory=EpochSums)  # the sums of those batches
    skipped_total: int = 0
    history: list[dict] = field(default_factory=list)  # the rows of the epochs done


def load_resume_checkpoint(
    cfg: TrainConfig, path: Path, procs: Processes, *, also: list[str] | None = None
) -> Checkpoint | None:
    """The checkpoint to resume from (None: start afresh), checked against `cfg`.

    also: further differences from the first run (its manifest's), listed in the same error.
    """
    if not cfg.resume:
        if path.exists():
            raise ValueError(f"{path} exists: pass --resume to continue that run, or choose another --out")
        return None
    if not path.exists():
        log(f"--resume: no {path} yet; starting from the beginning", enabled=procs.main)
        return None
    state = read_checkpoint(path)
    if state.meta is None or state.meta.training is None or "train_state" not in state.extra:
        raise CheckpointError(f"{path}: not a training checkpoint (no settings or training state to resume)")
    saved = config_from_dict(dict(state.meta.training), source=str(path))
    differences = resume_differences(saved, cfg) + list(also or [])
    if differences:
        raise ResumeMismatchError(f"{path} was trained with other settings:\n  " + "\n  ".join(differences))
    return state


def restore(state: Checkpoint, run: TrainingSetup) -> RunPosition:
    """Put the checkpoint's weights, optimiser, schedule, scaler and RNG states back into `run`."""
    procs = run.procs
    ts = state.extra["train_state"]
    run.model.load_state_dict(state.state_dict)
    run.optimizer.load_state_dict(ts["optimizer"])
    run.schedule.load_state_dict(ts["schedule"])
    run.scaler.load_state_dict(ts["scaler"])
    position = RunPosition(
        epoch=int(ts["epoch"]),
        batch=int(ts["batch"]),
        partial=EpochSums(**ts["partial"]),
        skipped_total=int(ts["skipped_total"]),
        history=list(ts["history"]),
    )
    rngs = ts["rng"]
    if len(rngs) != procs.world_size:
        log(
            f"the checkpoint was written by {len(rngs)} process(es), this run has {procs.world_size}: "
            "training goes on, but not on exactly the clips of an uninterrupted run",
            enabled=procs.main,
        )
    set_rng_state(rngs[procs.rank % len(rngs)])
    where = f"epoch {position.epoch + 1}" + (f", batch {position.batch}" if position.batch else "")
    log(f"resumed from {state.source} at {where}", enabled=procs.main)
    return position


def save_training_checkpoint(path: Path, run: TrainingSetup, position: RunPosition) -> None:
    """Write `path` (rank 0) so that a run resumes at `position`; every process must call it."""
    # Every process's RNG state, so each continues its own dropout stream.
    rngs = run.procs.gather(rng_state())
    if not run.procs.main:
        return
    train_state = {
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": position.epoch,
        "batch": position.batch,
        "partial": position.partial.as_dict(),
        "skipped_total": position.skipped_total,
        "history": position.history,
        "rng": rngs,
        "world_size": run.procs.world_size,
    }
    save_model(run.model, path, training=run.cfg.to_dict(), extra={"train_state": train_state})


# --- random number generators -------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) RNG states as tensors and plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": py_version,
        "python_gauss": py_gauss,
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
