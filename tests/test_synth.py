"""The synthetic motion dataset: layout, determinism, decodability, and that only motion differs."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import av
import numpy as np
import pytest

from videozoo.data import synth

SIZE = (48, 64)  # (H, W), not square so that swapped axes show
FRAMES = 12


def decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        rate = stream.average_rate
    return frames, rate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "a"
    info = synth.make_dataset(root, videos_per_class=2, val_fraction=0.5, seed=3, size=SIZE, num_frames=FRAMES, fps=12)
    return info


def test_layout_and_lists(dataset):
    root = dataset.root
    classes = list(synth.DEFAULT_CLASSES)
    assert (root / "classes.txt").read_text().split("\n")[:-1] == classes
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.mp4")) == sorted(
        f"{c}/{c}_{i:04d}.mp4" for c in classes for i in range(2)
    )
    for name, index in (("train.txt", 0), ("val.txt", 1)):
        lines = (root / name).read_text().splitlines()
        assert lines == [f"{c}/{c}_{index:04d}.mp4 {c}" for c in classes]
        for line in lines:
            path, label = line.split(" ")
            assert (dataset.train_list.parent / path).is_file()
            assert path.split("/")[0] == label
    params = json.loads((root / "synth.json").read_text())
    assert params["seed"] == 3 and params["size"] == list(SIZE) and params["num_frames"] == FRAMES
    assert (dataset.num_train, dataset.num_val) == (8, 8)


def test_same_seed_same_bytes(dataset, tmp_path):
    again = synth.make_dataset(
        tmp_path / "b",
        classes=("zoom_out", "move_up"),
        videos_per_class=2,
        val_fraction=0.5,
        seed=3,
        size=SIZE,
        num_frames=FRAMES,
        fps=12,
        workers=2,
    )
    # A video depends on (seed, class, index) only: not on the class list or the worker count.
    for name in ("zoom_out/zoom_out_0001.mp4", "move_up/move_up_0000.mp4"):
        assert (again.root / name).read_bytes() == (dataset.root / name).read_bytes()
    other = synth.make_dataset(
        tmp_path / "c",
        classes=("move_up",),
        videos_per_class=1,
        val_fraction=0.0,
        seed=4,
        size=SIZE,
        num_frames=FRAMES,
        fps=12,
    )
    assert other.num_val == 0
    assert (other.root / "move_up/move_up_0000.mp4").read_bytes() != (
        dataset.root / "move_up/move_up_0000.mp4"
    ).read_bytes()


def test_videos_decode_to_what_was_rendered(dataset):
    for name in synth.DEFAULT_CLASSES:
        frames, rate = decode(dataset.root / name / f"{name}_0001.mp4")
        assert frames.shape == (FRAMES, *SIZE, 3)
        assert rate == Fraction(12)
        rendered = synth.render_video(name, synth.video_rng(3, name, 1), size=SIZE, num_frames=FRAMES)
        # Luma only: 4:2:0 chroma subsampling alone costs the saturated colours a few dB.
        error = (frames.astype(np.float64) - rendered.frames) @ np.array([0.299, 0.587, 0.114])
        assert 10 * math.log10(255**2 / np.mean(error**2)) > 35


@pytest.mark.parametrize("name", ["move_right", "move_down", "zoom_in", "rotate_cw"])
def test_opposite_class_is_exact_time_reversal(name):
    forward = synth.render_video(name, 11, size=SIZE, num_frames=FRAMES)
    backward = synth.render_video(synth.OPPOSITE[name], 11, size=SIZE, num_frames=FRAMES)
    for a, b in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(a, b[::-1])


def _ks(a, b):
    """Largest gap between two empirical distribution functions."""
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


def test_single_frames_carry_no_class_information():
    # Pose of the object in every frame of 300 small videos per class.
    poses = {}
    for name in synth.DEFAULT_CLASSES:
        videos = [
            synth.render_video(name, synth.video_rng(0, name, i), size=(16, 16), num_frames=8) for i in range(300)
        ]
        poses[name] = {
            "x": np.concatenate([v.center[:, 0] for v in videos]),
            "y": np.concatenate([v.center[:, 1] for v in videos]),
            "radius": np.concatenate([v.radius for v in videos]),
            "angle": np.concatenate([v.angle for v in videos]),
            "first_x": np.array([v.center[0, 0] for v in videos]),
            "first_angle": np.array([v.angle[0] for v in videos]),
            "mean_level": np.array([v.frames.mean() for v in videos]),
        }
    reference = poses["move_left"]
    for name, pose in poses.items():
        for key in reference:
            assert _ks(pose[key], reference[key]) < 0.15, (name, key)
    # ...while the order of frames gives the class away.
    steps = {name: np.mean(np.diff(np.log(p["radius"].reshape(300, 8)), axis=1)) for name, p in poses.items()}
    assert steps["zoom_in"] > 0.02 and steps["zoom_out"] < -0.02 and abs(steps["move_left"]) < 1e-9


# Candidate motions over `k` frames, mapping a pixel of frame t to where its content is in frame t+k;
# y points down, so a growing angle turns clockwise on screen.
def _candidates(short, k):
    step = 0.018 * short * k
    turn = math.radians(4.5) * k
    zoom = math.exp(0.03 * k)

    def rotate(angle):
        c, s = math.cos(angle), math.sin(angle)
        return lambda d: np.stack([c * d[0] - s * d[1], s * d[0] + c * d[1]])

    return {
        "move_right": ("shift", np.array([step, 0.0])),
        "move_left": ("shift", np.array([-step, 0.0])),
        "move_down": ("shift", np.array([0.0, step])),
        "move_up": ("shift", np.array([0.0, -step])),
        "zoom_in": ("about", lambda d: d * zoom),
        "zoom_out": ("about", lambda d: d / zoom),
        "rotate_cw": ("about", rotate(turn)),
        "rotate_ccw": ("about", rotate(-turn)),
    }


def _sample(frame, x, y):
    """Bilinear sample of an (H, W, 3) frame at pixel coordinates (centres at .5), wrapping around."""
    height, width = frame.shape[:2]
    x, y = x - 0.5, y - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    at = lambda dy, dx: frame[(y0 + dy) % height, (x0 + dx) % width]  # noqa: E731
    return (at(0, 0) * (1 - fx) + at(0, 1) * fx) * (1 - fy) + (at(1, 0) * (1 - fx) + at(1, 1) * fx) * fy


def test_decoded_object_moves_as_its_class_says(dataset):
    # Which candidate motion best predicts frame t+k from frame t inside the object?
    height, width = SIZE
    k = 4
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    for name in synth.DEFAULT_CLASSES:
        frames, _ = decode(dataset.root / name / f"{name}_0000.mp4")
        frames = frames.astype(np.float64)
        truth = synth.render_video(name, synth.video_rng(3, name, 0), size=SIZE, num_frames=FRAMES)
        errors = {}
        for candidate, (how, motion) in _candidates(min(SIZE), k).items():
            total = 0.0
            for t in range(FRAMES - k):
                inside = truth.alpha[t] > 0.99
                cx, cy = truth.center[t]
                # Offsets from the centre, the shortest way round the torus.
                d = np.stack([(xs - cx + width / 2) % width, (ys - cy + height / 2) % height])
                d -= np.array([width / 2, height / 2])[:, None, None]
                moved = d + motion[:, None, None] if how == "shift" else motion(d)
                predicted = _sample(frames[t + k], moved[0] + cx, moved[1] + cy)
                total += np.mean((predicted - frames[t])[inside] ** 2)
            errors[candidate] = total
        # The opposite motion explains the frames much worse. (A small, smooth object can be matched
        # about as well by a zoom as by a turn, so only the direction is asserted for every class.)
        assert errors[synth.OPPOSITE[name]] > 1.4 * errors[name], (name, errors)
        if name.startswith("move_"):
            assert min(errors, key=errors.get) == name, (name, errors)


def test_clutter_changes_only_the_background():
    clean = synth.render_video("rotate_cw", 5, size=SIZE, num_frames=FRAMES, clutter=0.0)
    busy = synth.render_video("rotate_cw", 5, size=SIZE, num_frames=FRAMES)
    for key in ("alpha", "center", "radius", "angle"):
        np.testing.assert_array_equal(getattr(clean, key), getattr(busy, key))
    outside = clean.alpha == 0
    assert np.ptp(clean.frames[outside], axis=0).max() == 0
    assert np.ptp(busy.frames[outside], axis=0).max() > 20


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        synth.make_dataset(tmp_path, classes=("jump",), videos_per_class=2)
    with pytest.raises(ValueError):
        synth.make_dataset(tmp_path, size=(47, 64), videos_per_class=2)
    with pytest.raises(ValueError):
        synth.make_dataset(tmp_path, videos_per_class=2, val_fraction=1.0)
    assert set(synth.OPPOSITE) == set(synth.MOTIONS) == set(synth.DEFAULT_CLASSES) | set(synth.DIAGONAL_CLASSES)


# --- the wide variety ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["move_left", "move_up", "zoom_out", "rotate_ccw"])
def test_wide_opposite_class_is_exact_time_reversal(name):
    forward = synth.render_video(name, 21, size=SIZE, num_frames=FRAMES, variety="wide")
    backward = synth.render_video(synth.OPPOSITE[name], 21, size=SIZE, num_frames=FRAMES, variety="wide")
    for a, b in zip(forward, backward, strict=False):
        np.testing.assert_array_equal(a, b[::-1])


def test_wide_objects_move_as_their_class_says():
    short = min(SIZE)
    diagonals = {
        "move_down_right": (1, 1),
        "move_up_left": (-1, -1),
        "move_up_right": (1, -1),
        "move_down_left": (-1, 1),
    }
    for name in synth.DEFAULT_CLASSES + synth.DIAGONAL_CLASSES:
        for index in range(15):
            v = synth.render_video(name, synth.video_rng(4, name, index), size=SIZE, num_frames=FRAMES, variety="wide")
            assert v.frames.shape == (FRAMES, *SIZE, 3) and v.frames.dtype == np.uint8
            # Steps of the first object's centre, the shortest way round the torus.
            step = np.diff(v.center, axis=0)
            step = (step + np.array([SIZE[1], SIZE[0]]) / 2) % np.array([SIZE[1], SIZE[0]]) - np.array(
                [SIZE[1], SIZE[0]]
            ) / 2
            mean = step.mean(axis=0) / short
            growth = np.diff(np.log(v.radius)).mean()
            turn = np.diff(np.unwrap(v.angle)).mean()
            if name in diagonals:
                direction = np.array(diagonals[name]) / math.sqrt(2)
                assert (
                    mean @ direction > 0.01
                    and abs(mean[0] * direction[1] - mean[1] * direction[0]) < 0.25 * (mean @ direction) + 0.004
                )
            elif name.startswith("move_"):
                axis, sign = {"move_right": (0, 1), "move_left": (0, -1), "move_down": (1, 1), "move_up": (1, -1)}[name]
                assert sign * mean[axis] > 0.01 and abs(mean[1 - axis]) < 0.25 * abs(mean[axis]) + 0.004, (name, mean)
                assert growth == 0 and turn == 0
            elif name.startswith("zoom_"):
                assert (growth > 0) == (name == "zoom_in") and abs(growth) >= 0.0069, (name, growth)
                assert np.abs(mean).max() < 0.004 and turn == 0
            else:
                assert math.degrees(turn) * (1 if name == "rotate_cw" else -1) >= 2.49, (name, turn)
                assert np.abs(mean).max() < 0.004 and growth == 0


def test_wide_single_frames_carry_no_class_information():
    levels, coverage = {}, {}
    for name in synth.DEFAULT_CLASSES:
        videos = [
            synth.render_video(name, synth.video_rng(0, name, i), size=(16, 16), num_frames=8, variety="wide")
            for i in range(200)
        ]
        levels[name] = np.array([v.frames[3].mean() for v in videos])
        coverage[name] = np.array([v.alpha[3].mean() for v in videos])
    for name in synth.DEFAULT_CLASSES:
        assert _ks(levels[name], levels["move_left"]) < 0.17, name
        assert _ks(coverage[name], coverage["move_left"]) < 0.17, name


def test_wide_dataset_and_command_line(tmp_path):
    from videozoo.cli import main

    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path / "w"),
                "--variety",
                "wide",
                "--classes",
                "zoom_in,rotate_cw",
                "--videos-per-class",
                "2",
                "--size",
                "32",
                "--frames",
                "8",
                "--val-fraction",
                "0.5",
            ]
        )
        == 0
    )
    params = json.loads((tmp_path / "w" / "synth.json").read_text())
    assert params["variety"] == "wide" and params["classes"] == ["zoom_in", "rotate_cw"]
    frames, _ = decode(tmp_path / "w" / "zoom_in" / "zoom_in_0001.mp4")
    rendered = synth.render_video(
        "zoom_in", synth.video_rng(0, "zoom_in", 1), size=(32, 32), num_frames=8, variety="wide"
    )
    error = (frames.astype(np.float64) - rendered.frames) @ np.array([0.299, 0.587, 0.114])
    assert 10 * math.log10(255**2 / np.mean(error**2)) > 30
    with pytest.raises(ValueError, match="unknown variety"):
        synth.make_dataset(tmp_path / "x", variety="busy", videos_per_class=2)
    with pytest.raises(ValueError, match="unknown variety"):
        synth.render_video("zoom_in", 0, variety="busy")


def test_wide_draws_every_look():
    """Every shape, texture and background kind comes up; faint objects sit near the background's colour."""
    from videozoo.data.synth import wide

    rng = np.random.default_rng(5)
    background = np.array([120.0, 90.0, 150.0])
    looks = [wide._draw_look(rng, background) for _ in range(600)]
    assert {look.shape for look in looks} == set(wide.SHAPES)
    assert {look.texture for look in looks} == set(wide.TEXTURES)
    distance = np.array([np.linalg.norm(look.colours - background, axis=1).max() for look in looks])
    faint = distance <= wide.FAINT_CONTRAST[1] + 1e-6
    assert 0.2 < faint.mean() < 0.4
    assert all(look.aspect <= 0.4 for look in looks if look.shape == "bar")
    assert any(look.aspect == 1.0 for look in looks if look.shape == "ellipse")  # discs: only the texture turns
    kinds = [wide._draw_background(rng, 32, 32) for _ in range(60)]
    assert any(bg.regions is not None for bg in kinds) and any(bg.regions is None for bg in kinds)
