"""Setting up a run: the videos and classes, the model on its device, the loaders, the optimiser,
the learning-rate schedule, the gradient scaler and the loss.

:func:`read_videos` reads the data specs; :func:`set_up` builds everything else into a
:class:`TrainingSetup`, which the epoch loop, validation and checkpointing share.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset, DistributedSampler, Sampler, Subset

from videozoo.data.datasets import DatasetSpecError, VideoList, load_video_list
from videozoo.data.input_config import InputConfig
from videozoo.data.workers import WatchedLoader
from videozoo.io import VideoDecodeError, open_video
from videozoo.models.base import VideoClassifier
from videozoo.models.registry import get_spec
from videozoo.models.spec import ModelSpec
from videozoo.train.config import TrainConfig
from videozoo.train.data import ClipDataset, ResumableSampler, collate_clips, ignore_sigterm
from videozoo.train.model import arch_overrides, build_model, resolve_input
from videozoo.train.param_groups import describe_groups, parameter_groups
from videozoo.train.processes import Processes
from videozoo.train.report import log
from videozoo.train.schedule import LRSchedule, ScheduleSpec
from videozoo.weights import hub


@dataclass
class Videos:
    """The labelled videos of a run and its classes (label i is class_names[i])."""

    train: VideoList
    val: VideoList | None
    class_names: list[str]


def read_videos(cfg: TrainConfig) -> Videos:
    train_list = load_video_list(cfg.data, classes=_read_classes(cfg))
    class_names = list(train_list.classes)
    val_list = load_video_list(cfg.val_data, classes=class_names) if cfg.val_data else None
    return Videos(train_list, val_list, class_names)


def _read_classes(cfg: TrainConfig) -> list[str] | None:
    if cfg.classes is None:
        return None
    names = [line.strip() for line in Path(cfg.classes).read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"{cfg.classes}: class names repeat")
    return names


def check_readable(videos: VideoList, class_names: list[str], *, enabled_log: bool = True) -> None:
    """Open every video of `videos`; raise DatasetSpecError if none, or none of some class, can be read.

    Videos that cannot be read are only warned about here (training skips them).
    """
    paths = [item.path for item in videos.items]
    with ThreadPoolExecutor(max_workers=min(8, max(len(paths), 1))) as pool:
        reasons = dict(zip(paths, pool.map(_unreadable, paths), strict=True))
    bad = {p: r for p, r in reasons.items() if r is not None}
    if not bad:
        return
    example = next(iter(bad.items()))
    if len(bad) == len(paths):
        raise DatasetSpecError(
            f"{videos.source}: none of the {len(paths)} training videos can be read (e.g. {example[0]}: "
            f"{example[1]}); nothing was trained"
        )
    readable: dict[int, int] = {}
    listed: dict[int, str] = {}
    for item in videos.items:
        listed.setdefault(item.label, item.path)
        readable[item.label] = readable.get(item.label, 0) + (reasons[item.path] is None)
    empty = sorted(label for label in listed if readable[label] == 0)
    if empty:
        names = ", ".join(repr(class_names[label]) for label in empty[:10]) + (" ..." if len(empty) > 10 else "")
        first = listed[empty[0]]
        raise DatasetSpecError(
            f"{videos.source}: {len(empty)} class(es) have no readable training video: {names} (e.g. {first}: "
            f"{reasons[first]}); nothing was trained"
        )
    log(
        f"warning: {len(bad)} of {len(paths)} training videos cannot be read and will be skipped, e.g. "
        f"{example[0]}: {example[1]}",
        enabled=enabled_log,
    )


def _unreadable(path: str) -> str | None:
    """Why `path` cannot be opened as a video, or None."""
    try:
        with open_video(path) as video:
            video.duration  # noqa: B018  (reads the container's header)
    except (VideoDecodeError, OSError) as e:
        return getattr(e, "reason", None) or str(e)
    return None


@dataclass
class TrainingSetup:
    cfg: TrainConfig
    procs: Processes
    spec: ModelSpec
    class_names: list[str]
    input: InputConfig  # the clip the run trains on (the registry's with the config's overrides)
    model: VideoClassifier  # on procs.device
    ddp: nn.parallel.DistributedDataParallel | None  # wraps `model` when several processes run
    train_set: ClipDataset
    train_sampler: ResumableSampler
    val_set: Subset | None  # this process's share of the validation videos
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    steps_per_epoch: int

    @property
    def device(self) -> torch.device:
        return self.procs.device

    def loader(self, dataset: Dataset, sampler: Sampler | None = None) -> WatchedLoader:
        # More loader processes than cores only adds contention (results do not depend on it).
        workers = min(self.cfg.num_workers, _cpu_count())
        # A worker stuck on one video is stopped and named (WorkerStalled) instead of hanging the run.
        return WatchedLoader(
            dataset,
            stall_seconds=self.cfg.stall_timeout,
            describe=_path_namer(dataset),
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


def _path_namer(dataset: Dataset):
    """index -> the video's path, for a ClipDataset or a Subset of one."""
    indices = None
    if isinstance(dataset, Subset):
        indices, dataset = list(dataset.indices), dataset.dataset
    items = dataset.videos.items if isinstance(dataset, ClipDataset) else None

    def name(i: int) -> str:
        j = indices[i] if indices is not None else i
        return str(items[j].path) if items is not None else f"item {j}"

    return name


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_up(cfg: TrainConfig, procs: Processes, videos: Videos) -> TrainingSetup:
    spec = get_spec(cfg.model)
    input_config = resolve_input(spec.input, cfg)
    model, ddp = _model_on_device(cfg, procs, spec, input_config, videos.class_names)
    # Each group carries its own weight decay and lr scale (layer-wise decay; one group when off).
    params = parameter_groups(model, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay, model_name=cfg.model)
    train_set, train_sampler, val_set = _datasets(cfg, procs, input_config, videos)

    global_batch = cfg.batch_size * cfg.accumulate * procs.world_size
    peak_lr = cfg.lr if cfg.lr is not None else cfg.base_lr * global_batch / cfg.lr_reference_batch
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=peak_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=peak_lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_sampler) / cfg.batch_size / cfg.accumulate)
    schedule_spec = ScheduleSpec(
        steps_per_epoch=steps_per_epoch,
        epochs=cfg.epochs,
        warmup_epochs=cfg.warmup_epochs,
        warmup_factor=cfg.warmup_factor,
        kind=cfg.schedule,
        milestones=tuple(cfg.milestones),
        gamma=cfg.gamma,
    )
    schedule = LRSchedule(optimizer, schedule_spec, peak_lr)
    if cfg.precision == "fp16" and procs.device.type != "cuda":
        raise ValueError("fp16 training needs CUDA; on a CPU use --precision bf16")
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    log(
        f"{len(train_set)} training videos, {len(val_set) if val_set else 0} validation videos, "
        f"{len(videos.class_names)} classes; clip {input_config.num_frames}x{input_config.train_crop_size}px "
        f"(every {input_config.sampling_rate} frames at {input_config.fps:g} fps); global batch {global_batch}, "
        f"peak lr {peak_lr:.4g}{describe_groups(params, cfg.layer_decay)}, {steps_per_epoch} steps/epoch, "
        f"{procs.world_size} process(es) on {procs.device}",
        enabled=procs.main,
    )
    return TrainingSetup(
        cfg=cfg,
        procs=procs,
        spec=spec,
        class_names=list(videos.class_names),
        input=input_config,
        model=model,
        ddp=ddp,
        train_set=train_set,
        train_sampler=train_sampler,
        val_set=val_set,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        criterion=criterion,
        steps_per_epoch=steps_per_epoch,
    )


def _model_on_device(
    cfg: TrainConfig, procs: Processes, spec: ModelSpec, input_config: InputConfig, class_names: list[str]
) -> tuple[VideoClassifier, nn.parallel.DistributedDataParallel | None]:
    """The model to train, named and with its clip (for its checkpoints), on the process's device."""
    overrides = arch_overrides(spec, cfg, input_config)
    key = spec.resolve_weights(cfg.weights).key
    if procs.active and key is not None:
        # One download, by rank 0; the others then read it from the cache.
        if procs.main:
            hub.fetch(spec.weights[key])
        procs.barrier()
    model, origin = build_model(spec, cfg, overrides, class_names)
    log(
        f"{cfg.model}: {origin}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters",
        enabled=procs.main,
    )
    model.class_names = list(class_names)
    model.model_name = spec.name
    model.input_config = input_config
    if cfg.sync_bn and procs.active:
        if procs.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log("sync_bn needs CUDA; BatchNorm statistics stay per process", enabled=procs.main)
    model = model.to(procs.device)
    ddp = None
    if procs.active:
        ids = [procs.device.index] if procs.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model, ddp


def _datasets(
    cfg: TrainConfig, procs: Processes, input_config: InputConfig, videos: Videos
) -> tuple[ClipDataset, ResumableSampler, Subset | None]:
    train_set = ClipDataset(
        videos.train, input_config, train=True, seed=cfg.seed, hflip=cfg.hflip, cache=cfg.cache_videos
    )
    inner = DistributedSampler(train_set, num_replicas=procs.world_size, rank=procs.rank, shuffle=True, seed=cfg.seed)
    val_set = None
    if videos.val is not None:
        full = ClipDataset(videos.val, input_config, train=False, cache=cfg.cache_videos)
        # Each process scores its own share, without the padding a DistributedSampler adds.
        val_set = Subset(full, list(range(procs.rank, len(full), procs.world_size)))
    return train_set, ResumableSampler(inner), val_set
