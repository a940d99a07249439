"""Dense features (`videozoo features --dense`): the count formula, window placement, resampling,
flags, resumption, and equality with the engine's features of each window taken alone."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import videozoo.jobs.dense as dense
from videogen import make_video, read_index
from videozoo.cli.main import main
from videozoo.engine import Engine
from videozoo.engine.views import count_views
from videozoo.io import open_video
from videozoo.jobs.dense import DenseConfig, DensePlan, extract_dense, get_preset, presets
from videozoo.models.registry import get_spec

MODEL = "motion_tiny"  # packaged weights, a 64x64 crop: the cheapest zoo model to run


def _brute_force_count(frames: int, n: int, s: int, last: str, lookahead: int = 0) -> int:
    # The definition the formula stands for: windows start at 0, S, 2S, ... before the end;
    # `drop` keeps the whole ones (followed by `lookahead` more frames), `pad` keeps them up to the
    # first that reaches the end.
    count = 0
    for k in range(frames):
        start = k * s
        if start >= frames or (last == "drop" and start + n + lookahead > frames):
            break
        count += 1
        if last == "pad" and start + n >= frames:
            break
    return count


COUNT_TABLE = [
    # frames, clip_frames, stride, last, expected
    (0, 4, 2, "drop", 0),
    (0, 4, 2, "pad", 0),
    (3, 4, 2, "drop", 0),
    (3, 4, 2, "pad", 1),
    (4, 4, 2, "drop", 1),
    (4, 4, 2, "pad", 1),
    (10, 4, 3, "drop", 3),
    (10, 4, 3, "pad", 3),
    (11, 4, 3, "drop", 3),
    (11, 4, 3, "pad", 4),
    (9, 2, 4, "drop", 2),
    (9, 2, 4, "pad", 3),
    (8, 2, 4, "pad", 2),
    (64, 64, 64, "drop", 1),
    (127, 64, 64, "drop", 1),
    (127, 64, 64, "pad", 2),
    (100, 16, 4, "drop", 22),
    (100, 16, 4, "pad", 22),
    (101, 16, 4, "pad", 23),
]


@pytest.mark.parametrize(("frames", "n", "s", "last", "expected"), COUNT_TABLE)
def test_count_formula_table(frames, n, s, last, expected):
    plan = DensePlan(n, s, last=last)
    assert plan.count(frames) == expected
    if last == "drop":
        assert expected == max(0, math.floor((frames - n) / s) + 1)
    elif frames:
        assert expected == min(math.ceil(frames / s), math.ceil(max(frames - n, 0) / s) + 1)
    ranges = plan.ranges(frames)
    assert len(ranges) == expected
    assert all(a == k * s and b == min(a + n, frames) and a < b for k, (a, b) in enumerate(ranges))


@pytest.mark.parametrize(("last", "lookahead"), [("drop", 0), ("pad", 0), ("drop", 1), ("drop", 3)])
def test_count_formula_is_its_definition(last, lookahead):
    for n, s in [(1, 1), (4, 1), (4, 3), (5, 5), (3, 7), (16, 4)]:
        for frames in range(0, 40):
            count = DensePlan(n, s, last=last, lookahead=lookahead).count(frames)
            assert count == _brute_force_count(frames, n, s, last, lookahead), (frames, n, s)


@pytest.mark.parametrize(("frames", "expected"), [(64, 0), (65, 1), (128, 1), (129, 2), (200, 3)])
def test_video_features_count_needs_one_frame_past_each_stack(frames, expected):
    # video_features runs a 64-frame stack once the 65th frame is read: floor((F - 65) / 64) + 1.
    plan = get_preset("video-features-i3d").plan()
    assert plan.lookahead == 1 and plan.count(frames) == expected == max(0, (frames - 65) // 64 + 1)


def test_a_lookahead_applies_to_drop_only():
    with pytest.raises(ValueError, match="last='drop'"):
        DensePlan(4, 2, last="pad", lookahead=1)


JOB_TABLE = [
    # frames, clip_frames, stride, last[, lookahead]
    (11, 4, 3, "drop"),
    (11, 4, 3, "pad"),
    (3, 4, 2, "drop"),
    (3, 4, 2, "pad"),
    (9, 2, 4, "pad"),
    (16, 8, 8, "drop"),
    (16, 8, 8, "drop", 1),
    (17, 8, 8, "drop", 1),
]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    made = {}
    for frames in sorted({row[0] for row in JOB_TABLE} | {30}):
        made[frames] = make_video(folder / f"v{frames}.mp4", num_frames=frames, fps=30, width=64, height=48)
    return made


def _run(out, paths, plan: DensePlan, **kwargs):
    cfg = DenseConfig(
        model=MODEL,
        out=str(out),
        clip_frames=plan.clip_frames,
        stride=plan.stride,
        fps=plan.fps,
        last=plan.last,
        lookahead=plan.lookahead,
        videos=[str(p) for p in paths],
        weights="default",
        precision="fp32",
        **kwargs,
    )
    return extract_dense(cfg)


@pytest.mark.parametrize("row", JOB_TABLE, ids=lambda row: "-".join(map(str, row)))
def test_job_writes_the_formulas_count(row, videos, tmp_path):
    frames, n, s, last, *ahead = row
    plan = DensePlan(n, s, last=last, lookahead=ahead[0] if ahead else 0)
    summary = _run(tmp_path, [videos[frames]], plan)
    stem = videos[frames].stem
    feats = np.load(tmp_path / f"{stem}.npy")
    side = json.loads((tmp_path / f"{stem}.json").read_text())
    assert summary["failed"] == 0 and side["frames"] == frames
    assert feats.dtype == np.float32 and feats.shape == (plan.count(frames), side["dim"])
    assert [(w["start_frame"], w["end_frame"]) for w in side["windows"]] == plan.ranges(frames)
    for w in side["windows"]:
        assert w["start"] == pytest.approx(w["start_frame"] / 30, abs=1e-5)
        assert w["end"] == pytest.approx(w["end_frame"] / 30, abs=1e-5)
    assert (side["model"], side["clip_frames"], side["stride"], side["last"]) == (MODEL, n, s, last)
    assert side["lookahead"] == plan.lookahead
    assert side["fps"] == 30 and side["videozoo_version"] and len(side["weights_sha256"]) == 64


def _frames_fed(monkeypatch):
    """Patch the job to note the frame index (read from the picture) of every frame of every window."""
    fed: list[list[int]] = []
    real = dense.window_views

    def spy(engine, window, video_fps):
        fed.append([read_index(f.rgb().permute(1, 2, 0).numpy()) for f in window.frames])
        return real(engine, window, video_fps)

    monkeypatch.setattr(dense, "window_views", spy)
    return fed


def test_windows_are_placed_by_frame_index(videos, tmp_path, monkeypatch):
    fed = _frames_fed(monkeypatch)
    _run(tmp_path, [videos[11]], DensePlan(4, 3, last="pad"))
    assert fed == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [9, 10, 10, 10]]


def test_fps_resamples_the_timeline(videos, tmp_path, monkeypatch):
    fed = _frames_fed(monkeypatch)
    # 30 frames at 30 fps seen at 15 fps: 15 frames, frame j showing decoded frame 2j.
    _run(tmp_path / "15", [videos[30]], DensePlan(5, 5, fps=15.0, last="drop"))
    assert fed == [[0, 2, 4, 6, 8], [10, 12, 14, 16, 18], [20, 22, 24, 26, 28]]
    side = json.loads((tmp_path / "15" / "v30.json").read_text())
    assert side["frames"] == 15 and side["fps"] == 15.0 and side["video_fps"] == 30.0 and side["resampled"]
    assert side["windows"][1] == {"start_frame": 5, "end_frame": 10, "start": 0.333333, "end": 0.666667}
    fed.clear()
    # At 20 fps frame j is at j / 20 s: the nearest decoded frame is 1.5 j, ties to the earlier.
    _run(tmp_path / "20", [videos[30]], DensePlan(20, 20, fps=20.0, last="drop"))
    assert fed == [[math.floor(1.5 * j) for j in range(20)]]


@pytest.mark.parametrize("kind", ["vfr", "bframes"])
def test_resampling_takes_the_nearest_frame_of_any_timing(kind, tmp_path):
    from videogen import vfr_timestamps

    if kind == "vfr":
        path = make_video(tmp_path / "v.mp4", num_frames=30, timestamps=vfr_timestamps(30), width=64, height=48)
    else:
        path = make_video(tmp_path / "v.mp4", num_frames=40, fps=30, bframes=True, width=64, height=48)
    with open_video(path) as video:
        pts = [f.pts_sec for f in video.frames()]
    with open_video(path) as video:
        timeline = list(dense.resampled_timeline(video.frames(), 10.0, None))
    end = pts[-1] + (pts[-1] - pts[-2])
    assert [tf.index for tf in timeline] == list(range(math.ceil((end - pts[0]) * 10 - 1e-6)))
    for tf in timeline:
        assert tf.time == pytest.approx(pts[0] + tf.index / 10)
        shown = read_index(tf.frame.rgb().permute(1, 2, 0).numpy())
        best = min(abs(t - tf.time) for t in pts)
        assert abs(pts[shown] - tf.time) <= best + 1e-6  # the nearest decoded frame
        # On a tie, the earlier one.
        assert all(abs(pts[i] - tf.time) > best + 1e-6 for i in range(shown))


def test_dense_features_equal_the_engines_one_window_at_a_time(videos, tmp_path, monkeypatch):
    plan = DensePlan(8, 3, last="pad")
    passes = []
    forward = Engine.forward
    monkeypatch.setattr(Engine, "forward", lambda self, v, *a: passes.append(count_views(v)) or forward(self, v, *a))
    _run(tmp_path, [videos[30]], plan, batch_size=4)
    monkeypatch.undo()
    assert passes == [4, 4, 1]  # --batch-size windows per forward pass, the rest in the last
    got = np.load(tmp_path / "v30.npy")
    engine = Engine.build(MODEL, weights="default", precision="fp32")
    with open_video(videos[30]) as video:
        frames = [f.rgb() for f in video.frames()]
    want = []
    for a, b in plan.ranges(len(frames)):
        clip = frames[a:b] + [frames[b - 1]] * (plan.clip_frames - (b - a))
        x = torch.stack(clip, dim=1)  # (C, N, H, W) uint8
        want.append(engine.forward(engine.transform(x, video_fps=30.0, presampled=True), "features")[0].numpy())
    assert got.shape == (len(want), want[0].shape[0]) and len(want) == plan.count(30) == 9
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-5 * np.abs(got).max())


def test_memory_holds_one_window_of_frames_whatever_the_length(videos):
    # What the run holds grows with the window, not with the video: at most clip_frames frames.
    engine = Engine.build(MODEL, weights="default", precision="fp32")
    for plan in (DensePlan(4, 1), DensePlan(4, 3), DensePlan(3, 7, last="drop"), DensePlan(6, 6, fps=60.0)):
        result = dense.dense_features(engine, videos[30], plan)
        assert result.peak_frames_held <= plan.clip_frames
        assert len(result.features) == plan.count(result.frames)


def test_a_preset_crop_is_used_and_recorded(videos, tmp_path, monkeypatch):
    shapes = []
    real = dense.window_views
    monkeypatch.setattr(dense, "window_views", lambda *a: shapes.append(tuple(real(*a).shape)) or real(*a))
    _run(tmp_path, [videos[11]], DensePlan(4, 4, last="drop"), crop=48)
    side = json.loads((tmp_path / "v11.json").read_text())
    assert side["crop"] == 48 and shapes == [(1, 3, 4, 48, 48)] * 2
    with pytest.raises(ValueError, match="crop 65: must be between 1 and the short side 64"):
        _run(tmp_path / "big", [videos[11]], DensePlan(4, 4), crop=65)


def test_a_resumed_run_computes_only_unfinished_videos(videos, tmp_path, monkeypatch):
    plan = DensePlan(4, 2, last="pad")
    paths = [videos[11], videos[16]]
    assert _run(tmp_path, paths, plan)["computed"] == 2
    first = (tmp_path / "v11.npy").stat().st_mtime_ns, (tmp_path / "v11.json").read_text()
    (tmp_path / "v16.npy").unlink()  # as if the run had been killed before writing it
    calls = []
    real = dense.dense_features
    monkeypatch.setattr(
        dense, "dense_features", lambda engine, path, *a, **k: calls.append(path) or real(engine, path, *a, **k)
    )
    summary = _run(tmp_path, paths, plan, resume=True)
    assert calls == [str(videos[16])] and summary["computed"] == 1 and summary["skipped"] == 1
    assert ((tmp_path / "v11.npy").stat().st_mtime_ns, (tmp_path / "v11.json").read_text()) == first
    assert np.load(tmp_path / "v16.npy").shape[0] == plan.count(16)
    # The same settings without --resume: the finished videos are kept all the same.
    assert _run(tmp_path, paths, plan)["computed"] == 0
    assert ((tmp_path / "v11.npy").stat().st_mtime_ns, (tmp_path / "v11.json").read_text()) == first


def test_another_list_into_the_same_folder_reuses_finished_videos(videos, tmp_path):
    plan = DensePlan(4, 2)
    assert _run(tmp_path, [videos[11]], plan)["computed"] == 1
    summary = _run(tmp_path, [videos[11], videos[16]], plan)
    assert (summary["computed"], summary["skipped"]) == (1, 1)
    twin = tmp_path / "elsewhere" / "v16.mp4"
    twin.parent.mkdir()
    twin.write_bytes(videos[9].read_bytes())
    with pytest.raises(ValueError, match=r"v16\.npy already holds the features of .*/v16\.mp4"):
        _run(tmp_path, [twin], plan)


def test_other_settings_are_refused_unless_asked_to_overwrite(videos, tmp_path):
    paths = [videos[11], videos[16]]
    assert _run(tmp_path, paths, DensePlan(4, 2))["computed"] == 2
    for resume in (False, True):
        with pytest.raises(ValueError, match=r"(?s)pass --overwrite.*dense: .*'stride': 2.*'stride': 3"):
            _run(tmp_path, paths, DensePlan(4, 3), resume=resume)
    assert json.loads((tmp_path / "v11.json").read_text())["stride"] == 2  # untouched
    assert _run(tmp_path, paths, DensePlan(4, 3), overwrite=True)["computed"] == 2
    assert json.loads((tmp_path / "v11.json").read_text())["stride"] == 3
    assert np.load(tmp_path / "v11.npy").shape[0] == DensePlan(4, 3).count(11)
    with pytest.raises(ValueError, match="--overwrite: replaces"):
        _run(tmp_path, paths, DensePlan(4, 3), overwrite=True, resume=True)


def test_random_weights_are_never_continued(videos, tmp_path):
    cfg = DenseConfig(model=MODEL, out=str(tmp_path), clip_frames=4, stride=4, videos=[str(videos[11])], weights=None)
    assert extract_dense(cfg)["computed"] == 1
    with pytest.raises(ValueError, match="random weights"):
        extract_dense(cfg)
    assert extract_dense(replace(cfg, overwrite=True))["computed"] == 1


def test_a_video_that_cannot_be_read_is_recorded_and_the_run_goes_on(videos, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    summary = _run(tmp_path / "out", [bad, videos[11]], DensePlan(4, 4, last="drop"))
    assert summary["failed"] == 1 and summary["computed"] == 1
    records = [json.loads(line) for line in (tmp_path / "out" / "index.jsonl").read_text().splitlines()]
    assert "broken.mp4" in records[0]["error"] and records[1]["windows"] == 2
    # A video that failed is tried again by the next run; the finished one is kept.
    bad.write_bytes(videos[9].read_bytes())
    summary = _run(tmp_path / "out", [bad, videos[11]], DensePlan(4, 4, last="drop"))
    assert (summary["computed"], summary["skipped"], summary["failed"]) == (1, 1, 0)
    assert np.load(tmp_path / "out" / "broken.npy").shape[0] == 2


def test_two_videos_of_one_name_are_refused_before_anything_runs(videos, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = other / videos[11].name
    twin.write_bytes(videos[11].read_bytes())
    with pytest.raises(ValueError, match="output name 'v11'") as e:
        _run(tmp_path / "o", [videos[11], twin], DensePlan(4, 4))
    assert str(twin) in str(e.value) and str(videos[11]) in str(e.value)
    assert not (tmp_path / "o").exists()


def test_a_dataset_spec_gives_the_videos(videos, tmp_path):
    spec = tmp_path / "list.csv"
    spec.write_text(f"path\n{videos[11]}\n{videos[16]}\n")
    cfg = DenseConfig(model=MODEL, out=str(tmp_path / "o"), clip_frames=4, stride=4, data=str(spec), weights="default")
    summary = extract_dense(cfg)
    assert (summary["computed"], summary["failed"]) == (2, 0)
    assert np.load(tmp_path / "o" / "v11.npy").shape[0] == 3 and np.load(tmp_path / "o" / "v16.npy").shape[0] == 4


def test_a_video_named_like_the_manifest_is_refused(videos, tmp_path):
    clash = tmp_path / "manifest.mp4"
    clash.write_bytes(videos[11].read_bytes())
    with pytest.raises(ValueError, match="manifest.mp4: its output name 'manifest' would overwrite"):
        _run(tmp_path / "o", [clash], DensePlan(4, 4))


BAD_FLAGS = [
    (["--dense", "--clip-frames", "0", "--stride", "2"], "--clip-frames"),
    (["--dense", "--clip-frames", "4", "--stride", "x"], "--stride"),
    (["--dense", "--clip-frames", "4", "--stride", "2", "--fps", "-5"], "--fps"),
    (["--dense", "--clip-frames", "4", "--stride", "2", "--last", "wrap"], "--last"),
    (["--clip-frames", "4"], "--clip-frames"),
    (["--stride", "4"], "--stride"),
    (["--dense", "--stride", "4"], "--clip-frames"),
    (["--dense", "--clip-frames", "4"], "--stride"),
    (["--preset", "no-such-preset"], "--preset"),
    (["--preset", "video-features-i3d", "--stride", "8"], "--stride"),
    (["--preset", "video-features-i3d", "--model", "x3d_xs"], "--model"),
    (["--dense", "--clip-frames", "4", "--stride", "2", "--views", "10x3"], "--views"),
    (["--dense", "--clip-frames", "4", "--stride", "2", "--format", "safetensors"], "--format"),
    (["--dense", "--clip-frames", "4", "--stride", "2", "--workers", "3"], "--workers"),
    (["--overwrite"], "--overwrite"),
    (["--parquet"], "--parquet"),
    (["--dense", "--clip-frames", "4", "--stride", "2", "--resume", "--overwrite"], "--overwrite"),
    (
        ["--dense", "--clip-frames", "8", "--stride", "2", "--model", "mvit_base_16x4", "--weights", "none"],
        "--clip-frames",
    ),
    (
        ["--dense", "--clip-frames", "30", "--stride", "2", "--model", "slowfast_r50", "--weights", "none"],
        "--clip-frames",
    ),
]


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_a_bad_flag_gets_one_message_naming_it(flags, named, videos, tmp_path, capsys):
    try:
        status = main(["features", str(videos[11]), "--out", str(tmp_path / "o"), *flags])
    except SystemExit as e:  # argparse's own checks of a value
        status = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert named in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "o" / "index.jsonl").exists()


def test_presets_are_the_published_layouts(monkeypatch, tmp_path, videos):
    table = presets()
    assert set(table) == {"video-features-i3d", "actionformer-thumos-i3d", "opentad-slowfast-r50", "videomaev2-tad"}
    assert all(p.source and p.model for p in table.values())
    i3d = get_preset("video-features-i3d")
    assert (i3d.model, i3d.clip_frames, i3d.stride, i3d.fps, i3d.last, i3d.lookahead) == (
        "i3d_inception_rgb",
        64,
        64,
        None,
        "drop",
        1,
    )
    af = get_preset("actionformer-thumos-i3d")
    assert (af.model, af.clip_frames, af.stride, af.fps) == ("i3d_inception_rgb", 16, 4, 30.0)
    sf = get_preset("opentad-slowfast-r50")
    assert (sf.model, sf.clip_frames, sf.stride, sf.crop) == ("slowfast_r50", 32, 4, 224)
    seen = []
    monkeypatch.setattr(dense, "extract_dense", lambda cfg: seen.append(cfg) or {"failed": 0})
    assert main(["features", str(videos[11]), "--out", str(tmp_path), "--preset", "actionformer-thumos-i3d"]) == 0
    cfg = seen[0]
    assert (cfg.model, cfg.clip_frames, cfg.stride, cfg.fps, cfg.last, cfg.preset) == (
        "i3d_inception_rgb",
        16,
        4,
        30.0,
        "drop",
        "actionformer-thumos-i3d",
    )
    assert cfg.lookahead == 0
    assert main(["features", str(videos[11]), "--out", str(tmp_path), "--preset", "video-features-i3d"]) == 0
    assert (seen[1].model, seen[1].clip_frames, seen[1].lookahead) == ("i3d_inception_rgb", 64, 1)
    mae = get_preset("videomaev2-tad")
    assert (mae.model, mae.clip_frames, mae.stride, mae.fps, mae.last, mae.lookahead) == (
        "videomaev2_b_k710",
        16,
        4,
        None,
        "drop",
        0,
    )
    assert mae.squash and not mae.normalize
    assert main(["features", str(videos[11]), "--out", str(tmp_path), "--preset", "videomaev2-tad"]) == 0
    assert (seen[2].model, seen[2].squash, seen[2].normalize, seen[2].crop) == ("videomaev2_b_k710", True, False, None)


@pytest.mark.parametrize("frames", [15, 16, 19, 20, 101, 1000])
def test_videomaev2_tad_count_is_the_sources_range(frames):
    # extract_tad_feature.py starts a 16-frame clip at each of range(0, frames - 15, 4).
    plan = get_preset("videomaev2-tad").plan()
    assert plan.ranges(frames) == [(a, a + 16) for a in range(0, frames - 15, 4)]


def _squashed_reference(frames: torch.Tensor, size: int) -> torch.Tensor:
    # VideoMAE V2's extract_tad_feature.py: (T, H, W, C) uint8 -> (C, T, H, W) in [0, 1], each frame
    # resized to size x size by F.interpolate (bilinear, align_corners=False), no crop, no mean/std.
    vid = frames.permute(3, 0, 1, 2).to(torch.float32) / 255
    return torch.nn.functional.interpolate(vid, size=(size, size), mode="bilinear", align_corners=False)


def test_videomaev2_tad_transform_is_the_sources_at_full_size():
    # The preset's transform for the registry's ViT-B: a 5:3 clip squashed whole to 224x224.
    from videozoo.data.transforms import transform_for

    p = get_preset("videomaev2-tad")
    cfg = DenseConfig(out="unused", **p.settings())
    inp = dense.preset_input(get_spec(p.model).input, cfg)
    frames = torch.randint(0, 256, (16, 48, 80, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    views = transform_for(inp)(frames.permute(3, 0, 1, 2), presampled=True)
    ref = _squashed_reference(frames, 224)
    assert tuple(views.shape) == (1, 3, 16, 224, 224)
    torch.testing.assert_close(views[0], ref, rtol=0, atol=1e-6)


def test_videomaev2_tad_preset_end_to_end(monkeypatch, tmp_path):
    # A reduced VideoMAE V2 (16 frames, a 32x32 crop) in the registry's place: the preset through the
    # command line gives, window by window, what extract_tad_feature.py computes (the whole video
    # decoded, clips at range(0, F - 15, 4), squashed, forward_features).
    import videozoo.models.registry as registry
    from videozoo.models.factory import create_model, save_model

    spec = get_spec("videomaev2_b_k710")
    arch = {"dim": 64, "depth": 2, "num_heads": 4, "mlp_hidden": 128, "num_frames": 16, "crop_size": 32}
    small = spec.replace(
        arch={**spec.arch, **arch},
        input=replace(spec.input, crop_size=32, short_side=32, train_crop_size=32),
    )
    monkeypatch.setitem(registry._REGISTRY, "videomaev2_b_k710", small)
    torch.manual_seed(0)
    model = create_model("videomaev2_b_k710", weights=None).eval()
    for name, param in model.named_parameters():  # LayerNorms off their identity, so the test sees them
        if "norm" in name:
            param.data.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    weights = save_model(model, tmp_path / "small.pth")
    video = make_video(tmp_path / "wide.mp4", num_frames=27, fps=25, width=80, height=48, pattern="noise")
    argv = ["features", str(video), "--out", str(tmp_path / "o"), "--preset", "videomaev2-tad"]
    assert main([*argv, "--weights", str(weights), "--precision", "fp32"]) == 0
    feats = np.load(tmp_path / "o" / "wide.npy")
    side = json.loads((tmp_path / "o" / "wide.json").read_text())
    assert (side["squash"], side["normalize"], side["crop"], side["preset"]) == (True, False, 32, "videomaev2-tad")
    assert [(w["start_frame"], w["end_frame"]) for w in side["windows"]] == [(0, 16), (4, 20), (8, 24)]
    with open_video(video) as v:
        frames = torch.stack([f.rgb().permute(1, 2, 0) for f in v.frames()])  # (T, H, W, C) uint8
    with torch.inference_mode():
        ref = torch.cat(
            [model.forward_features(_squashed_reference(frames[a : a + 16], 32)[None]) for a in range(0, 27 - 15, 4)]
        ).numpy()
    assert feats.shape == ref.shape == (3, 64)
    np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_parquet_table_of_a_run(videos, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    plan = DensePlan(4, 3, last="pad")
    paths = [videos[11], videos[9], videos[3]]
    summary = _run(tmp_path, paths, plan, parquet=True)
    table = pq.read_table(tmp_path / "features.parquet")
    assert summary["table"] == str(tmp_path / "features.parquet")
    assert table.column_names == ["video", "name", "window", "start_frame", "end_frame", "start", "end", "vector"]
    rows = table.to_pylist()
    expected = []
    for path in paths:
        feats = np.load(tmp_path / f"{path.stem}.npy")
        side = json.loads((tmp_path / f"{path.stem}.json").read_text())
        for k, w in enumerate(side["windows"]):
            expected.append({"video": str(path), "name": path.stem, "window": k, **w, "vector": feats[k]})
    assert len(rows) == len(expected) == sum(plan.count(n) for n in (11, 9, 3))
    for got, want in zip(rows, expected, strict=True):
        assert {k: got[k] for k in want if k != "vector"} == {k: v for k, v in want.items() if k != "vector"}
        np.testing.assert_array_equal(np.asarray(got["vector"], np.float32), want["vector"])
    ident = json.loads(table.schema.metadata[b"videozoo"])
    assert ident == json.loads((tmp_path / "manifest.json").read_text())["identity"]
    assert not list(tmp_path.glob("*.tmp*"))  # no temporary file left
    # A second run computes nothing and writes the same table; a video added later joins it.
    again = _run(tmp_path, [*paths, videos[30]], plan, parquet=True)
    assert again["computed"] == 1 and again["skipped"] == 3
    table2 = pq.read_table(tmp_path / "features.parquet")
    assert table2.slice(0, len(rows)).equals(table) and table2.num_rows == len(rows) + plan.count(30)


def test_parquet_without_pyarrow_is_refused_before_anything_runs(videos, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # an import of it raises ImportError
    with pytest.raises(ValueError, match=r"--parquet: needs pyarrow.*videozoo\[parquet\]"):
        _run(tmp_path / "o", [videos[11]], DensePlan(4, 4), parquet=True)
    assert not (tmp_path / "o").exists()


def test_a_preset_needs_its_model_in_the_registry(monkeypatch):
    extra = dense.Preset("future-preset", "no_such_model", 16, 4, None, "pad", "a source")
    monkeypatch.setattr(dense, "PRESETS", (*dense.PRESETS, extra))
    assert "future-preset" not in presets()
    with pytest.raises(ValueError, match="--preset 'future-preset'"):
        get_preset("future-preset")


@pytest.mark.parametrize(
    ("preset", "dim", "positions"), [("opentad-slowfast-r50", 2304, 1), ("video-features-i3d", 1024, 7)]
)
def test_preset_models_give_the_published_width(preset, dim, positions):
    # Shapes only (meta device): the preset's clip through the model's features output.
    p = get_preset(preset)
    spec = get_spec(p.model)
    crop = p.crop or spec.input.crop_size
    with torch.device("meta"):
        model = spec.build().eval()
        x = torch.zeros(1, 3, p.clip_frames, crop, crop)
        clip = [x[:, :, :: spec.input.slow_alpha], x] if spec.input.slow_alpha else x
        # SlowFast at the preset's crop: one head position, each pathway's map pooled whole. I3D on
        # 64 frames: 7 overlapping 2-step positions in time, averaged as video_features does.
        assert tuple(model.forward_positions(clip).shape) == (1, positions, dim)
        assert tuple(model.forward_features(clip).shape) == (1, dim)


def test_actionformer_preset_end_to_end(official_checkpoint, tmp_path):
    # The preset through the command line with Inception I3D in its published file layout: a
    # 25 fps video of 21 frames (0.84 s) is 26 frames at 30 fps (0.84 * 30 = 25.2), which gives
    # whole windows at 0, 4 and 8; the one at 12 would end past the 26th frame and is dropped.
    from fixtures_util import FIXTURES

    if not (FIXTURES / "inception" / "i3d_inception_rgb.json").is_file():
        pytest.skip("the Inception I3D reference fixture is not available")
    weights = official_checkpoint("inception/i3d_inception_rgb")
    video = make_video(tmp_path / "clip.mp4", num_frames=21, fps=25, width=80, height=60)
    argv = ["features", str(video), "--out", str(tmp_path / "o"), "--preset", "actionformer-thumos-i3d"]
    assert main([*argv, "--weights", str(weights), "--precision", "fp32"]) == 0
    feats = np.load(tmp_path / "o" / "clip.npy")
    side = json.loads((tmp_path / "o" / "clip.json").read_text())
    assert feats.shape == (3, 1024) and side["frames"] == 26 and side["fps"] == 30.0
    assert side["preset"] == "actionformer-thumos-i3d" and side["model"] == "i3d_inception_rgb"
    assert [(w["start_frame"], w["end_frame"]) for w in side["windows"]] == [(0, 16), (4, 20), (8, 24)]


def test_feature_rows_grow_by_doubling_and_keep_every_row():
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((int(k), 5)).astype(np.float32) for k in rng.integers(1, 40, size=60)]
    rows = dense.FeatureRows()
    assert rows.parts() == []
    for b in batches:
        rows.append(b)
    (whole,) = rows.parts()
    assert rows.count == sum(len(b) for b in batches) > 2 * 256  # past two doublings
    np.testing.assert_array_equal(whole, np.concatenate(batches))
