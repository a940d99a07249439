"""Training and validation clips from a VideoList, and the collate that batches them.

A training sample is one random clip per video, with the model's training augmentation (random
clip start, random short-side scale jitter, random crop, horizontal flip). Its randomness comes
from a generator seeded by ``(seed, epoch, index)`` alone, so a sample is the same whichever worker
or process makes it and however the run was interrupted and resumed. Validation takes the centred
clip and the centre crop ("1x1"), as the model cards' single view.

A video that cannot be decoded is not fatal: the dataset returns a :class:`Skipped` marker, the
collate drops it from the batch and hands it on so the loop can warn and count.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from videozoo.data.datasets import VideoList
from videozoo.data.input_config import InputConfig
from videozoo.data.transforms import RandomHorizontalFlip, transform_for
from videozoo.engine.views import load_views
from videozoo.io import Clip, VideoDecodeError, open_video

Views = Tensor | list[Tensor]  # (C, T, H, W) or [slow, fast] for one sample; batched with a leading B


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one training sample's randomness, a function of (seed, epoch, index) only."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, dtype=np.uint64)
    g = torch.Generator()
    g.manual_seed(int(state[0]) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


@dataclass
class Skipped:
    """A sample whose video could not be used."""

    index: int
    path: str
    reason: str


class ClipDataset(Dataset):
    """One clip per video of `videos`: random and augmented (`train=True`) or centred.

    ``hflip`` is the probability of a horizontal flip (0.5 in the references; 0 turns it off for
    labels that a mirror image changes, such as left/right or clockwise/anticlockwise).

    Items are ``(views, label, index)`` with views ``(C, T, crop, crop)`` float32 (or ``[slow,
    fast]``), or a :class:`Skipped` marker. Call :meth:`set_epoch` before each epoch's loader is
    iterated (workers get a copy of the dataset then).
    """

    def __init__(
        self,
        videos: VideoList,
        input_config: InputConfig,
        *,
        train: bool,
        seed: int = 0,
        hflip: float = 0.5,
        decode_threads: int = 1,
        cache: bool = False,
    ):
        unlabelled = [it.path for it in videos.items if it.label is None]
        if unlabelled:
            raise ValueError(f"{videos.source}: {len(unlabelled)} video(s) have no label, e.g. {unlabelled[0]}")
        self.videos = videos
        self.input = input_config
        self.train = train
        self.seed = seed
        self.hflip = hflip
        self.epoch = 0
        self.decode_threads = decode_threads
        self._eval_transform = None if train else transform_for(input_config, "1x1", train=False)
        # path -> (duration, fps, whole decoded Clip) or the reason it failed. Filled once, before
        # loader workers start, so they share it (fork) instead of decoding each epoch again.
        self._cache: dict[str, tuple] | None = self._decode_all() if cache else None

    def _decode_all(self) -> dict[str, tuple]:
        cache: dict[str, tuple] = {}
        for item in self.videos.items:
            try:
                with open_video(item.path, threads=self.decode_threads, fps=self.input.fps) as video:
                    cache[item.path] = (video.duration, video.fps, video.decode_all())
            except (VideoDecodeError, OSError) as e:
                cache[item.path] = (getattr(e, "reason", None) or str(e),)
        return cache

    def _cached_views(self, path: str, transform):
        entry = self._cache[path]
        if len(entry) == 1:
            raise VideoDecodeError(path, entry[0])
        duration, fps, whole = entry
        (window,) = transform.windows(duration, video_fps=fps)
        keep = (whole.pts_sec >= window.start_sec) & (whole.pts_sec < window.end_sec)
        if not keep.any():  # a window past the last frame's timestamp: its nearest frame
            keep = whole.pts_sec == whole.pts_sec[(whole.pts_sec - window.start_sec).abs().argmin()]
        clip = Clip(whole.frames[:, keep], whole.pts_sec[keep], window.start_sec, window.end_sec)
        return transform(clip, video_fps=fps)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos.items)

    def transform(self, index: int):
        if not self.train:
            return self._eval_transform
        generator = sample_generator(self.seed, self.epoch, index)
        transform = transform_for(self.input, train=True, generator=generator)
        if self.hflip != 0.5:
            transform.flip = RandomHorizontalFlip(self.hflip, generator=generator) if self.hflip > 0 else None
        return transform

    def __getitem__(self, index: int):
        item = self.videos.items[index]
        try:
            if self._cache is not None:
                views = self._cached_views(item.path, self.transform(index))
            else:
                loaded = load_views(
                    item.path, self.transform(index), threads=self.decode_threads, frame_fps=self.input.fps
                )
                views = loaded.views
        except (VideoDecodeError, OSError) as e:
            return Skipped(index, item.path, getattr(e, "reason", None) or str(e))
        # (1, C, T, crop, crop) or [slow, fast] of that layout
        views = [v[0] for v in views] if isinstance(views, list) else views[0]
        return views, item.label, index


@dataclass
class Batch:
    inputs: Views | None  # (B, C, T, H, W) or [slow, fast]; None when every sample was skipped
    labels: Tensor  # (B,) int64
    indices: Tensor  # (B,) int64 dataset indices
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.numel())


def to_device(inputs: Views, device: torch.device) -> Views:
    """A batch's clips (or both pathways) on `device`."""
    if isinstance(inputs, list):
        return [x.to(device, non_blocking=True) for x in inputs]
    return inputs.to(device, non_blocking=True)


def collate_clips(samples: Sequence) -> Batch:
    """Stack samples into a Batch (pathway by pathway for two-pathway models); drop the skipped."""
    skipped = [s for s in samples if isinstance(s, Skipped)]
    good = [s for s in samples if not isinstance(s, Skipped)]
    labels = torch.tensor([s[1] for s in good], dtype=torch.int64)
    indices = torch.tensor([s[2] for s in good], dtype=torch.int64)
    if not good:
        return Batch(None, labels, indices, skipped)
    first = good[0][0]
    if isinstance(first, list):
        inputs: Views = [torch.stack([s[0][p] for s in good]) for p in range(len(first))]
    else:
        inputs = torch.stack([s[0] for s in good])
    return Batch(inputs, labels, indices, skipped)


class ResumableSampler(Sampler[int]):
    """Wraps an epoch's sampler and leaves out its first `skip` indices (a resumed epoch)."""

    def __init__(self, inner: Sampler[int], skip: int = 0):
        self.inner = inner
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)  # type: ignore[attr-defined]

    def __iter__(self):
        for position, index in enumerate(self.inner):
            if position >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(len(self.inner) - self.skip, 0)  # type: ignore[arg-type]


def ignore_sigterm(_worker_id: int) -> None:
    """Loader workers leave SIGTERM to the main process, which stops at a step boundary and saves;
    a worker killed by a signal sent to the whole process group would otherwise break the loader."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
