"""The transforms against the reference pipelines, re-written here with plain torch ops.

The seed pipelines, step by step as their documents give them:
- pytorchvideo model cards / PySlowFast ptvkinetics test: UniformTemporalSubsample(num_frames) on the
  decoded float frames -> /255 -> Normalize(mean, std) -> ShortSideScale(short_side) -> CenterCrop
  (cards, one view) or UniformCropVideo(crop) with aug index 0, 1, 2 (10x3) -> PackPathway(alpha).
- torchvision's VideoClassification (the weights' transforms()): every frame resized as uint8 to
  (128, 171), bilinear, no antialias -> center_crop(112) -> /255 -> Normalize.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import videozoo
from videozoo import transform_for
from videozoo.data.input_config import InputConfig
from videozoo.data.transforms import (
    CenterCrop,
    Normalize,
    PackPathway,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShortSideScale,
    Resize,
    ReverseChannels,
    ShortSideScale,
    UniformCrop,
    UniformTemporalSubsample,
    short_side_size,
    temporal_indices,
)
from videozoo.models.registry import get_spec
from videozoo.models.spec import ModelSpec

TOL = 1e-5
REQUIRED = ["slow_r50", "slowfast_r50", "r3d_18", "i3d_r50_32x2"]


def random_frames(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, t, h, w), generator=g, dtype=torch.uint8)  # (C, T, H, W)


# --- the seeds, in plain torch ---------------------------------------------------------------------


def seed_pytorchvideo(frames: torch.Tensor, cfg: InputConfig, crops: list[int] | None) -> list[torch.Tensor]:
    """pytorchvideo cards (crops=None: centre crop) or the ptvkinetics 3-crop test, one view each."""
    v = frames.to(torch.float32)  # EncodedVideo returns float frames
    t = v.shape[1]
    v = v.index_select(1, torch.clamp(torch.linspace(0, t - 1, cfg.num_frames), 0, t - 1).long())
    if cfg.channel_order == "BGR":
        v = v[[2, 1, 0]]
    if cfg.value_scale == 1.0:
        v = v / 255.0
    mean = torch.tensor(cfg.mean, dtype=torch.float32)[:, None, None, None]
    std = torch.tensor(cfg.std, dtype=torch.float32)[:, None, None, None]
    v = (v - mean) / std
    h, w = v.shape[-2:]
    if w < h:
        size = (int(math.floor(float(h) / w * cfg.short_side)), cfg.short_side)
    else:
        size = (cfg.short_side, int(math.floor(float(w) / h * cfg.short_side)))
    v = F.interpolate(v, size=size, mode="bilinear", align_corners=False)
    h, w = v.shape[-2:]
    c = cfg.crop_size
    views = []
    for idx in crops if crops is not None else [None]:
        if idx is None:  # torchvision center_crop
            y, x = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        else:  # uniform_crop
            y, x = int(math.ceil((h - c) / 2)), int(math.ceil((w - c) / 2))
            if h > w:
                y = {0: 0, 1: y, 2: h - c}[idx]
            else:
                x = {0: 0, 1: x, 2: w - c}[idx]
        views.append(v[:, :, y : y + c, x : x + c])
    return views


def seed_i3d_caffe2(frames: torch.Tensor, cfg: InputConfig) -> torch.Tensor:
    """The I3D 32x2 seed's clip mode: every sampling_rate-th frame of the window, short side 256,
    0-255 values normalised with 114.75 / 57.375, centre crop."""
    v = frames[:, :: cfg.sampling_rate][:, : cfg.num_frames].to(torch.float32)
    v = (v - 114.75) / 57.375
    h, w = v.shape[-2:]
    if w >= h:
        size = (cfg.short_side, int(math.floor(w / h * cfg.short_side)))
    else:
        size = (int(math.floor(h / w * cfg.short_side)), cfg.short_side)
    v = F.interpolate(v, size=size, mode="bilinear", align_corners=False)
    h, w = v.shape[-2:]
    c = cfg.crop_size
    y, x = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return v[:, :, y : y + c, x : x + c]


def seed_torchvision(frames: torch.Tensor, cfg: InputConfig) -> torch.Tensor:
    """VideoClassification on the frames torchvision's clip sampler keeps (every step-th frame)."""
    step = frames.shape[1] // cfg.num_frames
    vid = frames[:, ::step][:, : cfg.num_frames].permute(1, 0, 2, 3)  # (T, C, H, W) uint8
    vid = F.interpolate(vid.to(torch.float32), size=list(cfg.resize), mode="bilinear", align_corners=False)
    vid = vid.round().to(torch.uint8)  # torchvision's resize returns uint8 for uint8 input
    h, w = vid.shape[-2:]
    c = cfg.crop_size
    y, x = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    vid = vid[..., y : y + c, x : x + c].to(torch.float32) / 255
    mean = torch.tensor(cfg.mean)[:, None, None]
    std = torch.tensor(cfg.std)[:, None, None]
    vid = (vid - mean) / std
    return vid.permute(1, 0, 2, 3)  # (C, T, H, W)


def pack(view: torch.Tensor, alpha: int | None) -> list[torch.Tensor]:
    if alpha is None:
        return [view]
    t = view.shape[1]
    return [view.index_select(1, torch.linspace(0, t - 1, t // alpha).long()), view]


def as_pathways(out) -> list[torch.Tensor]:
    return out if isinstance(out, list) else [out]


def assert_views_equal(out, views: list[torch.Tensor], alpha: int | None):
    out = as_pathways(out)
    for v, ref in enumerate(views):
        for p, ref_p in enumerate(pack(ref, alpha)):
            assert out[p].shape[1:] == ref_p.shape
            err = (out[p][v] - ref_p).abs().max().item()
            assert err <= TOL, f"view {v} pathway {p}: max|diff| {err:.2e}"


# --- whole pipelines -------------------------------------------------------------------------------


def test_required_models_are_registered():
    missing = [n for n in REQUIRED if n not in videozoo.list_models()]
    assert not missing, f"not registered: {missing}"


@pytest.mark.parametrize(
    "name,hw",
    [
        ("slow_r50", (240, 320)),  # 256x341 after scaling: odd margin, centre and uniform crops differ
        ("slow_r50", (256, 341)),
        ("slow_r50", (360, 270)),  # portrait: crops move down the height
        ("slowfast_r50", (180, 320)),
    ],
)
def test_pyslowfast_models_match_the_seed(name, hw):
    cfg = get_spec(name).input
    assert cfg.resize is None
    frames = random_frames(cfg.num_frames * cfg.sampling_rate, *hw)
    for views, crops in [("1x1", None), ("10x3", [0, 1, 2])]:
        t = transform_for(name, views)
        assert (t.crops, t.clips) == (len(crops or [None]), 1 if views == "1x1" else 10)
        assert_views_equal(t(frames), seed_pytorchvideo(frames, cfg, crops), cfg.slow_alpha)


@pytest.mark.parametrize("hw", [(240, 320), (128, 171), (300, 200)])
def test_torchvision_model_matches_video_classification(hw):
    cfg = get_spec("r3d_18").input
    frames = random_frames(2 * cfg.num_frames, *hw)  # a 30 fps window: torchvision keeps every 2nd
    for views in ["1x1", "published"]:
        out = transform_for("r3d_18", views)(frames)
        assert out.shape == (1, 3, cfg.num_frames, cfg.crop_size, cfg.crop_size)
        assert (out[0] - seed_torchvision(frames, cfg)).abs().max().item() <= TOL


def test_torchvision_model_takes_the_resampling_grid_of_a_decoded_clip():
    cfg = get_spec("r3d_18").input
    video_fps = 30000 / 1001  # 29.97: torchvision keeps frames floor(k * 1.998)
    frames = random_frames(33, 64, 86, seed=2)
    first = 1100  # frame number of the window's first frame; grid frame 551 is 1100

    class Clip:
        def __init__(self, f, pts):
            self.frames, self.pts_sec = f, pts

    clip = Clip(frames, (first + torch.arange(33, dtype=torch.float64)) / video_fps)
    grid = (torch.arange(551, 551 + 16, dtype=torch.float32) * (video_fps / 15)).floor().long() - first
    expected = seed_torchvision(frames[:, grid].repeat_interleave(2, dim=1), cfg)
    out = transform_for("r3d_18")(clip, video_fps=video_fps)
    assert (out[0] - expected).abs().max().item() <= TOL
    # A window cut short by the end of the video: the step stays 2 frames with the frame rate.
    short = frames[:, :31]
    out = transform_for("r3d_18")(short, video_fps=30.0)
    assert (out[0] - seed_torchvision(torch.cat([short, short[:, -1:]], 1), cfg)).abs().max().item() <= TOL


@pytest.mark.parametrize("name", videozoo.list_models())
def test_every_registered_model_single_view(name):
    # The entry's own recipe (resize, crop, values, channels, pathways), with at most 8 frames
    # to keep the test fast.
    cfg = get_spec(name).input
    cfg = dataclasses.replace(cfg, num_frames=min(cfg.num_frames, 8))
    frames = random_frames(cfg.num_frames * cfg.sampling_rate, 120, 160, seed=1)
    out = transform_for(cfg, "1x1")(frames)
    if cfg.resize is not None:
        ref = [seed_torchvision(frames, cfg)]
    elif cfg.clip_spacing == "video-nonlocal-net":
        ref = [seed_i3d_caffe2(frames, cfg)]
    else:
        ref = seed_pytorchvideo(frames, cfg, None)
    assert_views_equal(out, ref, cfg.slow_alpha)


def test_two_pathway_packing_on_a_constructed_spec():
    cfg = InputConfig(
        num_frames=16, sampling_rate=2, fps=30, short_side=128, crop_size=128, train_crop_size=112, slow_alpha=4
    )
    frames = random_frames(32, 120, 160)
    slow, fast = transform_for(cfg, "10x3")(frames)
    assert slow.shape == (3, 3, 4, 128, 128) and fast.shape == (3, 3, 16, 128, 128)
    assert_views_equal([slow, fast], seed_pytorchvideo(frames, cfg, [0, 1, 2]), 4)


def test_bgr_and_raw_value_scale():
    cfg = InputConfig(
        num_frames=4,
        sampling_rate=2,
        fps=30,
        short_side=64,
        crop_size=64,
        train_crop_size=56,
        mean=(100.0, 110.0, 120.0),
        std=(50.0, 55.0, 60.0),
        value_scale=255.0,
        channel_order="BGR",
    )
    frames = random_frames(8, 48, 80)
    assert_views_equal(transform_for(cfg)(frames), seed_pytorchvideo(frames, cfg, None), None)


def test_spec_and_name_and_clip_object_give_the_same():
    spec = get_spec("slow_r50")
    frames = random_frames(64, 120, 160)

    class Clip:  # what videozoo.io hands out
        def __init__(self, f):
            self.frames = f

    a = transform_for("slow_r50")(frames)
    b = transform_for(spec)(Clip(frames))
    c = transform_for(spec.input)(frames)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert isinstance(spec, ModelSpec)


def test_short_window_repeats_frames():
    cfg = get_spec("slow_r50").input
    frames = random_frames(5, 64, 64)  # far fewer than the 64 the window should hold
    out = transform_for("slow_r50")(frames)
    assert out.shape[2] == cfg.num_frames
    assert torch.equal(out[0, :, 0], out[0, :, 1])  # linspace(0, 4, 8) -> 0, 0, 1, 1, 2, 2, 3, 4


# --- training --------------------------------------------------------------------------------------


def test_train_transform_is_reproducible_and_in_range():
    spec = get_spec("slow_r50")
    frames = random_frames(64, 120, 160)
    a = transform_for(spec, train=True, generator=torch.Generator().manual_seed(5))
    b = transform_for(spec, train=True, generator=torch.Generator().manual_seed(5))
    outs_a = [a(frames) for _ in range(4)]
    outs_b = [b(frames) for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b, strict=True))
    assert outs_a[0].shape == (1, 3, 8, 224, 224)
    assert not all(torch.equal(outs_a[0], o) for o in outs_a[1:])
    assert a.windows(10.0)[0].short is False


def test_random_transforms():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 40 * 50, dtype=torch.float32).reshape(2, 3, 40, 50)
    sizes = {RandomShortSideScale(20, 24, generator=g)(x).shape[-2] for _ in range(60)}
    assert sizes == {20, 21, 22, 23, 24}
    crops = [RandomCrop(30, generator=g)(x) for _ in range(40)]
    assert all(c.shape[-2:] == (30, 30) for c in crops) and len({c[0, 0, 0, 0].item() for c in crops}) > 10
    flips = [torch.equal(RandomHorizontalFlip(generator=g)(x), x.flip(-1)) for _ in range(200)]
    assert 60 < sum(flips) < 140


# --- single transforms -----------------------------------------------------------------------------


def test_short_side_size_formula():
    assert short_side_size(240, 320, 256) == (256, 341)
    assert short_side_size(320, 240, 256) == (341, 256)
    assert short_side_size(100, 100, 256) == (256, 256)
    # floor((long / short) * size) in double precision, in that order: 209, where 60 * 182 / 52 = 210.
    assert short_side_size(52, 60, 182) == (182, 209)
    x = torch.rand(3, 2, 240, 320)
    assert ShortSideScale(128)(x).shape == (3, 2, 128, 170)


def test_crops_offsets():
    x = torch.arange(256 * 341, dtype=torch.float32).reshape(1, 1, 256, 341)
    col = lambda t: int(t[0, 0, 0, 0].item()) % 341  # noqa: E731
    assert col(CenterCrop(256)(x)) == 42  # round(42.5) is 42 (half to even)
    assert [col(UniformCrop(256, i)(x)) for i in range(3)] == [0, 43, 85]  # ceil(42.5) is 43
    assert [col(UniformCrop(256, i, "caffe2")(x)) for i in range(3)] == [0, 42, 84]
    portrait = torch.arange(341 * 256, dtype=torch.float32).reshape(1, 1, 341, 256)
    row = lambda t: int(t[0, 0, 0, 0].item()) // 256  # noqa: E731
    assert [row(UniformCrop(256, i)(portrait)) for i in range(3)] == [0, 43, 85]
    with pytest.raises(ValueError):
        CenterCrop(300)(x)


def test_temporal_subsample_and_packing():
    assert temporal_indices(64, 8).tolist() == [0, 9, 18, 27, 36, 45, 54, 63]
    assert temporal_indices(32, 16, mode="stride").tolist() == list(range(0, 32, 2))
    assert temporal_indices(10, 4, mode="stride").tolist() == [0, 2, 5, 7]
    x = torch.arange(32).view(1, 32, 1, 1).expand(3, 32, 2, 2)
    assert UniformTemporalSubsample(8)(x)[0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    slow, fast = PackPathway(4)(x.unsqueeze(0))
    assert slow[0, 0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31] and fast.shape == (1, 3, 32, 2, 2)


def test_resize_quantize_equals_uint8_resize():
    frames = random_frames(2, 50, 70)
    as_uint8 = Resize((32, 45))(frames)
    as_float = Resize((32, 45), quantize=True)(frames.to(torch.float32))
    assert as_uint8.dtype == torch.uint8 and torch.equal(as_uint8.to(torch.float32), as_float)


def test_normalize_and_channels():
    x = torch.full((3, 1, 1, 1), 255.0)
    assert Normalize((0.5,) * 3, (0.25,) * 3)(x).flatten().tolist() == pytest.approx([2.0] * 3, abs=1e-6)
    caffe2 = Normalize((114.75,) * 3, (57.375,) * 3, value_scale=255)(x).flatten().tolist()
    assert caffe2 == pytest.approx([(255 - 114.75) / 57.375] * 3, abs=1e-6)
    rgb = torch.tensor([1, 2, 3], dtype=torch.uint8).view(3, 1, 1, 1)
    assert ReverseChannels()(rgb).flatten().tolist() == [3, 2, 1]


def test_i3d_32x2_clip_mode_matches_the_seed():
    cfg = get_spec("i3d_r50_32x2").input
    assert (cfg.value_scale, cfg.mean, cfg.std) == (255.0, (114.75,) * 3, (57.375,) * 3)
    frames = random_frames(cfg.num_frames * cfg.sampling_rate, 240, 320)
    out = transform_for("i3d_r50_32x2", "1x1")(frames)
    assert out.shape == (1, 3, 32, 256, 256)
    err = (out[0] - seed_i3d_caffe2(frames, cfg)).abs().max().item()
    assert err <= TOL, f"max|diff| {err:.2e}"
