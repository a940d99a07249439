"""motion_tiny: its packaged weights load offline, and it recognises motion it was never shown.

The generalisation tests predict, through the public API, clips of two generators that the training
never saw, each written independently of videozoo.data.synth and of each other: `motiongen2` (other
shapes, textures, backgrounds, speeds, frame rates, sizes, codecs) and `motiongen3` (elongated
objects with stripes fixed to them, at low contrast, drawn by supersampling over value noise), and
a 25-second `motiongen3` shot of one object doing four motions in turn through `videozoo timeline`.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import motiongen2
import motiongen3
import videozoo
from videozoo.cli import main
from videozoo.engine import Engine
from videozoo.models import motion_tiny
from videozoo.weights import hub
from videozoo.weights.sources import WeightSource

CLASSES = ["move_left", "move_right", "move_up", "move_down", "zoom_in", "zoom_out", "rotate_cw", "rotate_ccw"]
REPO = Path(__file__).resolve().parents[1]
CLIPS_PER_CLASS = 6


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Fail on any attempt to open a connection; the attempts are listed."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise NetworkUsed(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert not attempts, attempts


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    home = tmp_path / "videozoo-home"
    monkeypatch.setenv("VIDEOZOO_HOME", str(home))
    monkeypatch.setenv("VIDEOZOO_OFFLINE", "1")
    return home


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def packaged_file() -> Path:
    return Path(str(importlib.resources.files("videozoo.weights.embedded").joinpath("motion_tiny.safetensors")))


def test_packaged_file_is_small_and_matches_the_registry():
    path = packaged_file()
    assert path.is_file()
    assert path.stat().st_size <= 5 * 1024 * 1024
    source = videozoo.get_spec("motion_tiny").weights["synthetic_motion"]
    assert source.url == "package://videozoo.weights.embedded/motion_tiny.safetensors"
    assert hub.sha256_of(path) == source.sha256 == motion_tiny.WEIGHTS_SHA256
    assert path.stat().st_size == source.size


def test_default_weights_load_offline_from_the_package(empty_cache, no_network):
    model = videozoo.create_model("motion_tiny", weights="default")
    assert model.class_names == CLASSES
    assert model.num_classes == 8 and model.model_name == "motion_tiny"
    assert model.input_config == videozoo.get_spec("motion_tiny").input
    same = videozoo.create_model("motion_tiny", weights="synthetic_motion")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=False))
    # Nothing was downloaded or copied into the cache.
    assert not empty_cache.exists() or not any(empty_cache.rglob("*"))
    # An untrained model still carries the class names of the entry.
    assert videozoo.create_model("motion_tiny").class_names == CLASSES


def test_cli_predict_uses_the_packaged_weights(empty_cache, no_network, tmp_path, capsys):
    clip = motiongen2.make_clip("zoom_in", 1)
    path = motiongen2.write_clip(tmp_path / "clip.mp4", clip, seed=1)
    assert main(["predict", str(path), "--model", "motion_tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in out["top_k"]][0] in CLASSES and len(out["top_k"]) == 5
    assert abs(sum(r["probability"] for r in out["top_k"]) - 1) < 0.05


def test_packaged_weights_are_checked(empty_cache, no_network):
    spec = videozoo.get_spec("motion_tiny")
    good = spec.weights["synthetic_motion"]
    damaged = WeightSource(url=good.url, format=good.format, license=good.license, sha256="0" * 64, num_classes=8)
    with pytest.raises(hub.IntegrityError, match="motion_tiny.safetensors"):
        hub.fetch(damaged)
    missing = WeightSource(
        url="package://videozoo.weights.embedded/absent.safetensors", format="safetensors", license="Apache-2.0"
    )
    with pytest.raises(hub.WeightsUnavailableError, match="absent.safetensors is missing"):
        hub.fetch(missing)
    with pytest.raises(hub.WeightsUnavailableError, match="not installed"):
        hub.fetch(
            WeightSource(
                url="package://videozoo_no_such_package/m.safetensors", format="safetensors", license="Apache-2.0"
            )
        )
    with pytest.raises(ValueError, match="package://<package>/<file name>"):
        hub.fetch(WeightSource(url="package://videozoo.weights.embedded", format="safetensors", license="Apache-2.0"))


def _confusion(engine: Engine, make, seeds) -> np.ndarray:
    """(8, 8) counts of true x predicted class over the clips ``make(label, seed)`` writes."""
    confusion = np.zeros((8, 8), dtype=int)
    for label_index, label in enumerate(CLASSES):
        for seed in seeds:
            predicted = engine.predict(make(label, seed)).top_k(1)[0]["label"]
            confusion[label_index, CLASSES.index(predicted)] += 1
    return confusion


# What the packaged weights score on each generator's 48 test clips (docs/motion_tiny.md), less a
# margin of one clip: retrained weights must do as well.
GENERATORS = {
    "motiongen2": (
        lambda tmp, label, seed: motiongen2.write_clip(
            tmp / f"g2_{label}_{seed}.mp4", motiongen2.make_clip(label, seed), seed=seed
        ),
        range(1000, 1000 + CLIPS_PER_CLASS),
        0.97,
    ),
    "motiongen3": (
        lambda tmp, label, seed: motiongen3.write_clip(
            tmp / f"g3_{label}_{seed}.mp4", motiongen3.make_clip(label, seed)
        ),
        range(3000, 3000 + CLIPS_PER_CLASS),
        0.89,
    ),
}


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_recognises_clips_of_an_independent_generator(generator, empty_cache, no_network, tmp_path, one_thread):
    make, seeds, least = GENERATORS[generator]
    engine = Engine.build("motion_tiny", weights="default", views="1x1")
    confusion = _confusion(engine, lambda label, seed: make(tmp_path, label, seed), seeds)
    accuracy = np.trace(confusion) / confusion.sum()
    assert accuracy >= least, (
        f"{generator}: top-1 {accuracy:.1%} on {confusion.sum()} clips; confusion (true x predicted):\n{confusion}"
    )


@pytest.mark.xfail(
    strict=True,
    reason="the packaged weights read parts of this slow shot wrong: a slow turn of the long bar in part "
    "as a slide, a slow zoom in its opposite direction (docs/motion_tiny.md, Limits)",
)
def test_timeline_of_four_motions_in_one_shot(empty_cache, no_network, tmp_path, one_thread, capsys):
    # One object grows, slides right, turns counterclockwise and shrinks, slowly and without cuts.
    clip, plan = motiongen3.make_sequence(seed=0)
    video = motiongen3.write_clip(tmp_path / "four.mp4", clip)
    out = tmp_path / "timeline"
    assert main(["timeline", str(video), "--model", "motion_tiny", "--out", str(out), "--precision", "fp32"]) == 0
    capsys.readouterr()
    segments = json.loads((out / "timeline.json").read_text())["segments"]
    assert [s["label"] for s in segments] == [label for label, _ in plan], segments
    assert [s["start"] for s in segments[1:]] == pytest.approx([start for _, start in plan[1:]], abs=0.5), segments
    assert segments[-1]["end"] == pytest.approx(len(clip.frames) / clip.fps)


_INSTALLED_CHECK = textwrap.dedent(
    """
    import socket, sys
    def refuse(*args, **kwargs):
        raise SystemExit("network access attempted")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    import videozoo
    model = videozoo.create_model("motion_tiny", weights="default")
    print(videozoo.__file__)
    print(",".join(model.class_names))
    """
)


def test_an_installed_wheel_holds_and_loads_the_weights(tmp_path):
    # Built from a copy, so that the build leaves nothing in the working tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "videozoo", source / "videozoo", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("videozoo-*.whl")
    assert "videozoo/weights/embedded/motion_tiny.safetensors" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = dict(os.environ, PYTHONPATH=str(target), VIDEOZOO_OFFLINE="1", VIDEOZOO_HOME=str(tmp_path / "home"))
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run(
        [sys.executable, "-c", _INSTALLED_CHECK], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    location, names = run.stdout.split()
    assert Path(location).is_relative_to(target)
    assert names.split(",") == CLASSES
    assert not (tmp_path / "home").exists()
