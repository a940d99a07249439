"""The training loop: model and data set-up, the epochs, checkpoints, resumption, several processes.

One call of :func:`train` runs a whole (or resumed) training job. Launched by ``torchrun`` (the
environment sets ``WORLD_SIZE > 1``) it joins the process group (gloo on CPU, NCCL on CUDA), splits
every epoch with a DistributedSampler and averages gradients with DistributedDataParallel; only
rank 0 writes files.

Exact resumption: the checkpoint holds the model, optimizer, schedule, gradient scaler, RNG states
of every process, the position inside the epoch and the epoch's running sums. Together with the
per-sample augmentation generators (a function of seed, epoch and index) a resumed run takes the
same steps on the same clips as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from videozoo.data.datasets import VideoList, load_video_list
from videozoo.models.factory import model_from_checkpoint, save_model
from videozoo.engine.optimize import precision_context
from videozoo.models.base import VideoClassifier
from videozoo.data.input_config import InputConfig
from videozoo.models.spec import ModelSpec
from videozoo.models.registry import get_spec
from videozoo.train.config import TrainConfig, config_from_dict, resume_differences
from videozoo.train.data import Batch, ClipDataset, ResumableSampler, collate_clips, ignore_sigterm
from videozoo.train.report import Progress, RunReport, log
from videozoo.train.schedule import LRSchedule, ScheduleSpec
from videozoo.weights import hub
from videozoo.weights.checkpoint import Checkpoint, CheckpointError, read_checkpoint

CHECKPOINT = "checkpoint_last.pth"
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


# --- processes ------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        return bool(self.sum([float(flag)])[0] > 0) if self.active else flag

    def gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def _setup_processes(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    if want_cuda:
        dev = torch.device(device if ":" in device and world == 1 else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world == 1:
        return _Dist(device=dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://")
        owns = True
    return _Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev, owns_group=owns)


# --- model and input ------------------------------------------------------------------------------


def resolve_input(base: InputConfig, cfg: TrainConfig) -> InputConfig:
    """The model's InputConfig with the config's clip overrides applied.

    ``crop_size`` sets the training crop too unless ``train_crop_size`` is given; a new
    ``short_side`` scales the training jitter range (or the fixed torchvision resize) with it.
    """
    changes: dict[str, Any] = {}
    for name in ("num_frames", "sampling_rate", "fps", "short_side"):
        if getattr(cfg, name) is not None:
            changes[name] = getattr(cfg, name)
    if cfg.crop_size is not None:
        changes["crop_size"] = cfg.crop_size
        changes["train_crop_size"] = cfg.crop_size
    if cfg.train_crop_size is not None:
        changes["train_crop_size"] = cfg.train_crop_size
    if cfg.short_side is not None:
        ratio = base.train_jitter[1] / base.train_jitter[0]
        changes["train_jitter"] = (cfg.short_side, int(round(cfg.short_side * ratio)))
        if base.resize is not None:
            changes["resize"] = (cfg.short_side, int(round(cfg.short_side * base.resize[1] / base.resize[0])))
    if cfg.train_jitter is not None:
        changes["train_jitter"] = (int(cfg.train_jitter[0]), int(cfg.train_jitter[1]))
    out = dataclasses.replace(base, **changes)
    train_short = min(out.resize) if out.resize is not None else out.train_jitter[0]
    eval_short = min(out.resize) if out.resize is not None else out.short_side
    if out.train_crop_size > train_short:
        raise ValueError(f"the training crop {out.train_crop_size} is larger than the smallest short side {train_short}")
    if out.crop_size > eval_short:
        raise ValueError(f"the eval crop {out.crop_size} is larger than the eval short side {eval_short}")
    return out


def arch_overrides(spec: ModelSpec, cfg: TrainConfig, input_config: InputConfig) -> dict[str, Any]:
    """Keyword arguments to lay over the registry's (or a pretrained checkpoint's) arch: the config's
    `arch`, plus the clip length and training crop where the family class takes them (they fix the
    head's pooling window, and must be the clip's whatever the checkpoint was trained on)."""
    params = inspect.signature(spec.cls.__init__).parameters
    accepted = [p for p in params if p not in ("self", "num_classes")]
    overrides = dict(cfg.arch)
    if cfg.dropout is not None:
        overrides["dropout"] = cfg.dropout
    if "num_frames" in params and "num_frames" not in overrides:
        overrides["num_frames"] = input_config.num_frames
    if "crop_size" in params and "crop_size" not in overrides:
        overrides["crop_size"] = input_config.train_crop_size
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(
            f"{spec.name} ({spec.cls.__name__}) takes no argument(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted)}"
        )
    # YAML gives lists where the classes take tuples (e.g. temporal kernels per stage).
    return {k: _tuples(v) for k, v in overrides.items()}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def build_model(spec: ModelSpec, cfg: TrainConfig, overrides: dict[str, Any], class_names: list[str]) -> tuple[VideoClassifier, str]:
    """The model to train and a line saying where its weights come from.

    Pretrained weights are loaded into the checkpoint's architecture with the overrides laid over
    it; the classifier is replaced unless the checkpoint's class names are exactly the dataset's.
    """
    if cfg.weights is None:
        model = spec.build(num_classes=len(class_names), **overrides)
        return model, "random initialisation"
    if cfg.weights in spec.weights:
        path = hub.fetch(spec.weights[cfg.weights])
    else:
        path = Path(cfg.weights)
    model = model_from_checkpoint(spec, read_checkpoint(path), arch=overrides)
    pretrained = list(model.class_names) if model.class_names is not None else None
    if pretrained == list(class_names):
        return model, f"{cfg.weights} (classifier kept: same {len(class_names)} classes)"
    model.reset_classifier(len(class_names))
    return model, f"{cfg.weights} (new classifier for {len(class_names)} classes, was {len(pretrained or []) or model.num_classes})"


def _bn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in _bn_modules(model):
            m.eval()


# --- the run --------------------------------------------------------------------------------------


def _read_classes(cfg: TrainConfig) -> list[str] | None:
    if cfg.classes is None:
        return None
    names = [line.strip() for line in Path(cfg.classes).read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"{cfg.classes}: class names repeat")
    return names


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _StopFlag:
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


@dataclass
class _EpochSums:
    loss: float = 0.0
    correct: float = 0.0
    samples: float = 0.0
    skipped: float = 0.0
    seconds: float = 0.0
    lr: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class _Trainer:
    def __init__(self, cfg: TrainConfig, procs: _Dist, on_step: Callable[[int, int], None] | None):
        self.cfg = cfg
        self.procs = procs
        self.device = procs.device
        self.on_step = on_step
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / CHECKPOINT
        self.warned: set[str] = set()
        self.skipped_total = 0
        self.ddp = None

    # -- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        resume_state = self._load_resume_state()
        _seed_everything(cfg.seed)

        self.spec = get_spec(cfg.model)
        train_list = load_video_list(cfg.data, classes=_read_classes(cfg))
        self.class_names = list(train_list.classes)
        val_list = load_video_list(cfg.val_data, classes=self.class_names) if cfg.val_data else None
        if resume_state is not None and resume_state.class_names != self.class_names:
            raise ValueError(f"{self.ckpt_path}: trained on other classes than {cfg.data} now holds")

        self.input = resolve_input(self.spec.input, cfg)
        self.overrides = arch_overrides(self.spec, cfg, self.input)
        if self.procs.active and cfg.weights in self.spec.weights:
            # One download, by rank 0; the others then read it from the cache.
            if self.procs.main:
                hub.fetch(self.spec.weights[cfg.weights])
            self.procs.barrier()
        model, origin = build_model(self.spec, cfg, self.overrides, self.class_names)
        log(f"{cfg.model}: {origin}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", enabled=self.procs.main)
        model.class_names = list(self.class_names)
        model.model_name = self.spec.name
        model.input_config = self.input
        if cfg.sync_bn and self.procs.active:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                log("sync_bn needs CUDA; BatchNorm statistics stay per process", enabled=self.procs.main)
        self.model = model.to(self.device)
        self.ddp = None
        if self.procs.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

        self._make_loaders(train_list, val_list)
        global_batch = cfg.batch_size * cfg.accumulate * self.procs.world_size
        self.peak_lr = cfg.lr if cfg.lr is not None else cfg.base_lr * global_batch / cfg.lr_reference_batch
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=self.peak_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=self.peak_lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.train_sampler) / cfg.batch_size / cfg.accumulate)
        spec = ScheduleSpec(
            steps_per_epoch=self.steps_per_epoch,
            epochs=cfg.epochs,
            warmup_epochs=cfg.warmup_epochs,
            warmup_factor=cfg.warmup_factor,
            kind=cfg.schedule,
            milestones=tuple(cfg.milestones),
            gamma=cfg.gamma,
        )
        self.schedule = LRSchedule(self.optimizer, spec, self.peak_lr)
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 training needs CUDA; on a CPU use --precision bf16")
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        log(
            f"{len(self.train_set)} training videos, {len(self.val_set) if self.val_set else 0} validation videos, "
            f"{len(self.class_names)} classes; clip {self.input.num_frames}x{self.input.train_crop_size}px "
            f"(every {self.input.sampling_rate} frames at {self.input.fps:g} fps); global batch {global_batch}, "
            f"peak lr {self.peak_lr:.4g}, {self.steps_per_epoch} steps/epoch, {self.procs.world_size} process(es) on {self.device}",
            enabled=self.procs.main,
        )

        self.start_epoch, self.start_batch = 0, 0
        self.partial = _EpochSums()
        history: list[dict] = []
        if resume_state is not None:
            history = self._restore(resume_state)
        self.report = RunReport(
            self.out, enabled=self.procs.main, tensorboard=cfg.tensorboard, plot=cfg.plot,
            history=history, resume_step=self.schedule.step,
        )
        if self.procs.main:
            cfg.save(self.out / CONFIG_FILE)

    def _load_resume_state(self) -> Checkpoint | None:
        cfg = self.cfg
        if not cfg.resume:
            if self.ckpt_path.exists():
                raise ValueError(f"{self.ckpt_path} exists: pass --resume to continue that run, or choose another --out")
            return None
        if not self.ckpt_path.exists():
            log(f"--resume: no {self.ckpt_path} yet; starting from the beginning", enabled=self.procs.main)
            return None
        state = read_checkpoint(self.ckpt_path)
        if state.meta is None or state.meta.training is None or "train_state" not in state.extra:
            raise CheckpointError(f"{self.ckpt_path}: not a training checkpoint (no settings or training state to resume)")
        saved = config_from_dict(state.meta.training, source=str(self.ckpt_path))
        differences = resume_differences(saved, cfg)
        if differences:
            raise ValueError(f"{self.ckpt_path} was trained with other settings:\n  " + "\n  ".join(differences))
        return state

    def _make_loaders(self, train_list: VideoList, val_list: VideoList | None) -> None:
        cfg, procs = self.cfg, self.procs
        self.train_set = ClipDataset(
            train_list, self.input, train=True, seed=cfg.seed, hflip=cfg.hflip, cache=cfg.cache_videos
        )
        inner = DistributedSampler(self.train_set, num_replicas=procs.world_size, rank=procs.rank, shuffle=True, seed=cfg.seed)
        self.train_sampler = ResumableSampler(inner)
        self.val_set = None
        if val_list is not None:
            full = ClipDataset(val_list, self.input, train=False, cache=cfg.cache_videos)
            # Each process scores its own share, without the padding a DistributedSampler adds.
            self.val_set = Subset(full, list(range(procs.rank, len(full), procs.world_size)))

    def _loader(self, dataset, sampler=None) -> DataLoader:
        # More loader processes than cores only adds contention (results do not depend on it).
        workers = min(self.cfg.num_workers, _cpu_count())
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate_clips,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_sigterm if workers else None,
            # Its own generator keeps the loader from drawing on the global RNG (exact resumption).
            generator=torch.Generator().manual_seed(self.cfg.seed),
            persistent_workers=False,
        )

    def _restore(self, state: Checkpoint) -> list[dict]:
        ts = state.extra["train_state"]
        self.model.load_state_dict(state.state_dict)
        self.optimizer.load_state_dict(ts["optimizer"])
        self.schedule.load_state_dict(ts["schedule"])
        self.scaler.load_state_dict(ts["scaler"])
        self.start_epoch, self.start_batch = int(ts["epoch"]), int(ts["batch"])
        self.partial = _EpochSums(**ts["partial"])
        self.skipped_total = int(ts["skipped_total"])
        rngs = ts["rng"]
        if len(rngs) != self.procs.world_size:
            log(
                f"the checkpoint was written by {len(rngs)} process(es), this run has {self.procs.world_size}: "
                "training goes on, but not on exactly the clips of an uninterrupted run",
                enabled=self.procs.main,
            )
        _set_rng_state(rngs[self.procs.rank % len(rngs)])
        where = f"epoch {self.start_epoch + 1}" + (f", batch {self.start_batch}" if self.start_batch else "")
        log(f"resumed from {self.ckpt_path} at {where}", enabled=self.procs.main)
        return list(ts["history"])

    # -- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, epoch: int, batch: int, partial: _EpochSums) -> None:
        # Every process's RNG state, so each continues its own dropout stream.
        rngs = self.procs.gather(_rng_state())
        if not self.procs.main:
            return
        train_state = {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "batch": batch,
            "partial": partial.as_dict(),
            "skipped_total": self.skipped_total,
            "history": self.report.rows,
            "rng": rngs,
            "world_size": self.procs.world_size,
        }
        save_model(self.model, self.ckpt_path, training=self.cfg.to_dict(), extra={"train_state": train_state})

    # -- steps ------------------------------------------------------------------------------
    def _to_device(self, inputs):
        if isinstance(inputs, list):
            return [x.to(self.device, non_blocking=True) for x in inputs]
        return inputs.to(self.device, non_blocking=True)

    def _placeholder_input(self):
        c = self.input
        fast = torch.zeros(1, 3, c.num_frames, c.train_crop_size, c.train_crop_size, device=self.device)
        if c.slow_alpha:
            return [fast[:, :, :: c.slow_alpha].contiguous(), fast]
        return fast

    def _micro_step(self, batch: Batch, weight: float, sync: bool) -> tuple[float, float, int]:
        """Forward and backward one micro-batch; (loss sum, correct, samples)."""
        net = self.ddp if self.ddp is not None else self.model
        no_sync = net.no_sync() if (self.ddp is not None and not sync) else contextlib.nullcontext()
        with no_sync:
            if batch.inputs is None:
                if self.ddp is None:
                    return 0.0, 0.0, 0
                # Every process must take part in the gradient all-reduce: a zero-weighted
                # forward in eval mode (BatchNorm statistics and dropout untouched).
                self.model.eval()
                with precision_context(self.cfg.precision, self.device):
                    out = net(self._placeholder_input())
                self.scaler.scale(out.float().sum() * 0.0).backward()
                _set_train_mode(self.model, self.cfg.freeze_bn)
                return 0.0, 0.0, 0
            inputs = self._to_device(batch.inputs)
            labels = batch.labels.to(self.device, non_blocking=True)
            with precision_context(self.cfg.precision, self.device):
                logits = net(inputs)
            loss = self.criterion(logits.float(), labels)
            self.scaler.scale(loss * weight).backward()
        n = len(batch)
        correct = (logits.detach().argmax(dim=1) == labels).sum().item()
        return loss.item() * n, float(correct), n

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _note_skipped(self, skipped) -> None:
        for s in skipped:
            if s.path not in self.warned:
                self.warned.add(s.path)
                log(f"warning: skipped {s.path}: {s.reason}")

    # -- epochs -----------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, stop: _StopFlag) -> tuple[_EpochSums, bool]:
        cfg = self.cfg
        skip_batches = self.start_batch if epoch == self.start_epoch else 0
        sums = self.partial if epoch == self.start_epoch else _EpochSums()
        self.train_set.set_epoch(epoch)
        self.train_sampler.set_epoch(epoch)
        self.train_sampler.skip = skip_batches * cfg.batch_size
        loader = self._loader(self.train_set, self.train_sampler)
        num_batches = skip_batches + len(loader)
        _set_train_mode(self.model, cfg.freeze_bn)
        progress = Progress(cfg.progress, enabled=self.procs.main, total=num_batches, epoch=epoch, epochs=cfg.epochs, log_every=cfg.log_every, initial=skip_batches)
        t0 = time.perf_counter()
        seconds_before = sums.seconds
        batch_index = skip_batches
        try:
            for batch in loader:
                position = batch_index % cfg.accumulate
                group_start = batch_index - position
                group_size = min(cfg.accumulate, num_batches - group_start)
                if position == 0:
                    sums.lr = self.schedule.apply()
                    self.optimizer.zero_grad(set_to_none=True)
                if batch.skipped:
                    self._note_skipped(batch.skipped)
                    sums.skipped += len(batch.skipped)
                last_in_group = position == group_size - 1
                loss_sum, correct, n = self._micro_step(batch, 1.0 / group_size, sync=last_in_group)
                sums.loss += loss_sum
                sums.correct += correct
                sums.samples += n
                batch_index += 1
                progress.update(n * self.procs.world_size, loss_sum / max(n, 1), sums.lr)
                if not last_in_group:
                    continue
                self._optimizer_step()
                self.schedule.advance()
                self.report.add_step(self.schedule.step, loss_sum / max(n, 1), sums.lr)
                if self.on_step is not None:
                    self.on_step(epoch, self.schedule.step)
                if self.procs.any(stop.requested) and batch_index < num_batches:
                    sums.seconds = seconds_before + time.perf_counter() - t0
                    self._save_checkpoint(epoch, batch_index, sums)
                    return sums, True
        finally:
            progress.close()
        sums.seconds = seconds_before + time.perf_counter() - t0
        return sums, False

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        if self.val_set is None:
            return math.nan, math.nan
        self.model.eval()
        loss_sum = correct = count = 0.0
        for batch in self._loader(self.val_set):
            if batch.skipped:
                self._note_skipped(batch.skipped)
            if batch.inputs is None:
                continue
            labels = batch.labels.to(self.device)
            with precision_context(self.cfg.precision, self.device):
                logits = self.model(self._to_device(batch.inputs)).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            count += len(batch)
        loss_sum, correct, count = self.procs.sum([loss_sum, correct, count])
        if count == 0:
            return math.nan, math.nan
        return loss_sum / count, 100.0 * correct / count

    def run(self) -> TrainResult:
        cfg = self.cfg
        t_start = time.perf_counter()
        interrupted = False
        epochs_done = self.start_epoch
        with _StopFlag() as stop:
            for epoch in range(self.start_epoch, cfg.epochs):
                sums, interrupted = self._train_epoch(epoch, stop)
                if interrupted:
                    log(
                        f"stopped by SIGTERM in epoch {epoch + 1} after step {self.schedule.step}; "
                        f"{self.ckpt_path} saved, continue with --resume",
                        enabled=self.procs.main,
                    )
                    break
                t_val = time.perf_counter()
                last = epoch + 1 == cfg.epochs
                val_loss, val_acc = self._validate() if (last or (epoch + 1) % cfg.val_every == 0) else (math.nan, math.nan)
                loss, correct, samples, skipped = self.procs.sum([sums.loss, sums.correct, sums.samples, sums.skipped])
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
                self.report.add_epoch(row, self.schedule.step)
                val_text = f", val loss {val_loss:.4f} acc {val_acc:.1f}%" if not math.isnan(val_acc) else ""
                log(
                    f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.1f}%"
                    f"{val_text}, lr {sums.lr:.4g}, {seconds:.1f} s, {row['samples_per_s']:.1f} samples/s"
                    + (f", {int(skipped)} video(s) skipped" if skipped else ""),
                    enabled=self.procs.main,
                )
                self._save_checkpoint(epoch + 1, 0, _EpochSums())
                epochs_done = epoch + 1
                if self.procs.any(stop.requested):
                    interrupted = epoch + 1 < cfg.epochs
                    if interrupted:
                        log(f"stopped by SIGTERM after epoch {epoch + 1}; continue with --resume", enabled=self.procs.main)
                    break

        model_path = None
        if not interrupted and self.procs.main:
            model_path = save_model(
                self.model,
                self.out / FINAL_MODEL,
                training=self.cfg.to_dict(),
                extra={"metrics": self.report.rows[-1] if self.report.rows else {}},
            )
            log(f"saved {model_path}", enabled=True)
        self.report.close()
        self.procs.barrier()
        return TrainResult(
            out_dir=self.out,
            model_path=model_path,
            checkpoint_path=self.ckpt_path,
            epochs_completed=epochs_done,
            history=list(self.report.rows),
            class_names=list(self.class_names),
            interrupted=interrupted,
            skipped_videos=self.skipped_total,
            seconds=time.perf_counter() - t_start,
        )


def train(config: TrainConfig, *, on_step: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train (or fine-tune, or resume) as `config` says; see docs/training.md.

    `on_step(epoch, step)` is called after every optimizer step (epoch 0-based, step counted over
    the whole run).
    """
    config.validate()
    procs = _setup_processes(config.device)
    trainer = _Trainer(config, procs, on_step)
    try:
        trainer.setup()
        return trainer.run()
    finally:
        # DistributedDataParallel holds the process group: release it first, or gloo's threads may
        # be torn down in the wrong order at exit.
        trainer.ddp = None
        del trainer
        gc.collect()
        if procs.owns_group and dist.is_initialized():
            dist.destroy_process_group()
