"""Clip windows against the reference protocols' formulas, written out here from their sources."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from videozoo.data.input_config import InputConfig
from videozoo.data.sampling import (
    ClipWindow,
    center,
    constant_clips_per_video,
    is_single_view,
    parse_views,
    random,
    sliding,
    uniform,
    windows_for,
)
from videozoo.data.transforms import resampled_indices, temporal_indices
from videozoo.models.registry import get_spec

SLOW_8x8 = InputConfig(num_frames=8, sampling_rate=8, fps=30, short_side=256, crop_size=256, train_crop_size=224)


def frames_in(window: ClipWindow, video_fps: float, n_frames: int) -> list[int]:
    """Indices of the frames a decoder returns for [start, end): frame j shows at j / video_fps."""
    return [j for j in range(n_frames) if window.start_sec <= j / video_fps < window.end_sec]


# --- PySlowFast / pytorchvideo ---------------------------------------------------------------------


@pytest.mark.parametrize("duration", [10.0, 7.3, 2.2])
@pytest.mark.parametrize("num_clips", [1, 5, 10])
def test_pyslowfast_spacing_is_get_start_end_idx(duration, num_clips):
    clip = 64 / 30
    windows = uniform(duration, clip, num_clips)
    # PySlowFast, in frames at 30 fps: delta = max(size - clip, 0); start = delta * i / num_clips.
    fps = 30.0
    for i, w in enumerate(windows):
        delta = max(duration * fps - clip * fps, 0)
        assert w.start_sec == pytest.approx(delta * i / num_clips / fps, abs=1e-12)
        assert w.end_sec == pytest.approx(w.start_sec + clip, abs=1e-12)
        assert (w.index, w.num_clips, w.short) == (i, num_clips, False)


def test_constant_clips_per_video_matches_uniform_and_repeats_augs():
    plain = uniform(12.5, 2.0, 10)
    augs = constant_clips_per_video(12.5, 2.0, 10, augs_per_clip=3)
    assert len(augs) == 30
    assert [(w.index, w.aug_index) for w in augs[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert [w.start_sec for w in augs[::3]] == [w.start_sec for w in plain]
    # The exact rational steps of pytorchvideo: Fraction(max_start, clips) * i.
    step = Fraction(12.5 - 2.0) / 10
    assert [w.start_sec for w in plain] == [float(step * i) for i in range(10)]


def test_center_and_random():
    (w,) = center(10.0, 2.0)
    assert (w.start_sec, w.end_sec) == (4.0, 6.0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = [random(10.0, 2.0, generator=g1)[0].start_sec for _ in range(50)]
    b = [random(10.0, 2.0, generator=g2)[0].start_sec for _ in range(50)]
    assert a == b
    assert all(0.0 <= s <= 8.0 for s in a) and len(set(a)) == 50


@pytest.mark.parametrize("sampler", ["uniform", "center", "random", "constant"])
def test_short_video_gives_full_flagged_windows(sampler):
    clip = 64 / 30
    windows = {
        "uniform": lambda: uniform(1.0, clip, 10),
        "center": lambda: center(1.0, clip),
        "random": lambda: random(1.0, clip),
        "constant": lambda: constant_clips_per_video(1.0, clip, 4),
    }[sampler]()
    assert windows and all(w.short and w.start_sec == 0.0 and w.end_sec == clip for w in windows)
    # Subsampling the 30 frames that exist repeats frames to fill the clip (pytorchvideo).
    idx = temporal_indices(30, 8)
    assert idx.tolist() == [0, 4, 8, 12, 16, 20, 24, 29]
    # PySlowFast's clamp over the full 64-frame span repeats the last frame instead.
    assert temporal_indices(30, 8, span=64).tolist() == [0, 9, 18, 27, 29, 29, 29, 29]


def test_pyslowfast_offset_spacing():
    # USE_OFFSET_SAMPLING: frames, start_i = i * floor(delta / (n - 1)); n == 1 -> floor(delta / 2).
    fps, duration, clip = 30.0, 10.0, 64 / 30
    delta = fps * (duration - clip)  # 236 frames
    windows = uniform(duration, clip, 5, spacing="pyslowfast_offset", video_fps=fps)
    assert [round(w.start_sec * fps) for w in windows] == [i * math.floor(delta / 4) for i in range(5)]
    (one,) = uniform(duration, clip, 1, spacing="pyslowfast_offset", video_fps=fps)
    assert round(one.start_sec * fps) == math.floor(delta / 2)
    with pytest.raises(ValueError, match="video_fps"):
        uniform(duration, clip, 5, spacing="pyslowfast_offset")


def test_video_nonlocal_net_spacing():
    # Clip i starts at frame int(float32(N) / float32(n) * i), independent of the clip length.
    n_frames, fps = 301, 30.0
    windows = uniform(n_frames / fps, 64 / 30, 10, spacing="video-nonlocal-net", video_fps=fps)
    gap = torch.tensor(float(n_frames), dtype=torch.float32) / torch.tensor(10.0, dtype=torch.float32)
    expected = [int((gap * torch.tensor(float(i), dtype=torch.float32)).item()) for i in range(10)]
    assert [round(w.start_sec * fps) for w in windows] == expected


# --- torchvision -----------------------------------------------------------------------------------


def torchvision_clip_frames(n_frames: int, video_fps: float, frame_rate: float, clip_len: int, num_clips: int):
    """VideoClips(step_between_clips=1, frame_rate) + UniformClipSampler, on original frame indices."""
    total = int(math.floor(n_frames * frame_rate / video_fps))
    step = video_fps / frame_rate
    if float(step).is_integer():
        resampled = torch.arange(n_frames)[:: int(step)]  # a slice: ceil(n / step) frames, not total
    else:
        resampled = (torch.arange(total, dtype=torch.float32) * step).floor().to(torch.int64)
    n_candidates = resampled.numel() - clip_len + 1
    picked = torch.linspace(0, n_candidates - 1, steps=num_clips).floor().to(torch.int64)
    return [resampled[p : p + clip_len].tolist() for p in picked.tolist()]


@pytest.mark.parametrize(
    "video_fps,n_frames",
    [(30.0, 300), (30.0, 251), (15.0, 120), (60.0, 501), (25.0, 250), (29.97, 300), (23.976, 1001)],
)
def test_torchvision_spacing_and_resampling(video_fps, n_frames):
    clip_len, frame_rate = 16, 15.0
    step = video_fps / frame_rate
    expected = torchvision_clip_frames(n_frames, video_fps, frame_rate, clip_len, 5)
    windows = uniform(
        n_frames / video_fps, clip_len / frame_rate, 5, spacing="torchvision", fps=frame_rate, video_fps=video_fps
    )
    for w, ref in zip(windows, expected, strict=True):
        decoded = frames_in(w, video_fps, n_frames)
        assert decoded[0] == ref[0]
        # With the frames' timestamps: exactly torchvision's resampling grid.
        numbers = torch.round(torch.tensor(decoded, dtype=torch.float64) / video_fps * video_fps).long()
        assert [decoded[i] for i in resampled_indices(numbers, clip_len, step).tolist()] == ref
        # With the frame rate only: a fixed step from the first frame, exact for integer steps.
        kept = [decoded[i] for i in temporal_indices(len(decoded), clip_len, mode="stride", step=step).tolist()]
        if float(step).is_integer():
            assert kept == ref
        else:
            assert max(abs(a - b) for a, b in zip(kept, ref, strict=True)) <= 1


def test_torchvision_spacing_short_video():
    windows = uniform(0.5, 16 / 15, 5, spacing="torchvision", fps=15.0, video_fps=30.0)
    assert len(windows) == 5 and all(w.short and w.start_sec == 0 for w in windows)


# --- pytorchvideo UniformClipSampler ---------------------------------------------------------------


def test_sliding_windows_follow_uniform_clip_sampler():
    # pytorchvideo's own example: 39 frames at 30 fps, clips of 32 frames, stride 16.
    d, clip, stride = Fraction(39, 30), Fraction(32, 30), Fraction(16, 30)
    plain = sliding(d, clip, stride=stride)
    assert [(round(w.start_sec * 30), round(w.end_sec * 30)) for w in plain] == [(0, 32)]
    back = sliding(d, clip, stride=stride, backpad_last=True)
    assert [(round(w.start_sec * 30), round(w.end_sec * 30)) for w in back] == [(0, 32), (7, 39)]
    tiled = sliding(10.0, 2.0)
    assert [w.start_sec for w in tiled] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert sliding(1.0, 2.0)[0].short


# --- per-model windows -----------------------------------------------------------------------------


def test_views_parsing():
    assert parse_views("10x3") == (10, 3) and parse_views((5, 1)) == (5, 1)
    assert parse_views("published", SLOW_8x8) == (10, 3)
    assert is_single_view("1x1") and is_single_view((1, 1)) and not is_single_view("published")
    with pytest.raises(ValueError):
        parse_views("10x2")


def test_windows_for_a_registered_model():
    cfg = get_spec("slow_r50").input
    clip = cfg.num_frames * cfg.sampling_rate / cfg.fps
    (single,) = windows_for(cfg, 10.0, "1x1")
    assert single.start_sec == pytest.approx((10.0 - clip) / 2)
    assert single.end_sec == pytest.approx(single.start_sec + clip)
    test = windows_for(cfg, 10.0, "10x3")
    assert len(test) == 10 and test == uniform(10.0, Fraction(64, 30), 10)
    assert windows_for(cfg, 10.0, "published") == test
    (train,) = windows_for(cfg, 10.0, mode="train", generator=torch.Generator().manual_seed(0))
    assert 0.0 <= train.start_sec <= 10.0 - clip
    # Windows unpack as (start, end) pairs, what Video.get_clips takes.
    assert [tuple(w) for w in test[:2]] == [(test[0].start_sec, test[0].end_sec), (test[1].start_sec, test[1].end_sec)]


def test_windows_for_torchvision_model_needs_video_fps():
    cfg = get_spec("r3d_18").input
    with pytest.raises(ValueError, match="video_fps"):
        windows_for(cfg, 10.0, "published")
    windows = windows_for(cfg, 10.0, "published", video_fps=30.0)
    assert len(windows) == cfg.test_clips
    assert windows[0].start_sec == 0.0 and windows[-1].start_sec == pytest.approx((300 // 2 - 16) * 2 / 30)
