"""Training that cannot learn stops early and says why: no readable video (or none of a class) before
the first epoch; a loss that becomes NaN at the step it happens, keeping the last good checkpoint."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn as nn

from videozoo.jobs.rundir import RunError
from videozoo.train import train
from videozoo.train.config import add_cli_arguments, config_from_args

TINY = [
    "--epochs",
    "3",
    "--batch-size",
    "3",
    "--num-workers",
    "0",
    "--lr",
    "0.05",
    "--warmup-epochs",
    "1",
    "--milestones",
    "2",
    "--arch",
    "width_factor=0.5",
    "depth_factor=0.5",
    "head_width=32",
    "--num-frames",
    "4",
    "--sampling-rate",
    "2",
    "--fps",
    "15",
    "--crop-size",
    "24",
    "--short-side",
    "28",
    "--progress",
    "none",
    "--no-tensorboard",
    "--no-plot",
    "--device",
    "cpu",
    "--model",
    "x3d_xs",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from videozoo.data.synth import make_dataset

    return make_dataset(
        tmp_path_factory.mktemp("synth"),
        classes=("move_left", "move_right"),
        videos_per_class=3,
        size=(32, 32),
        num_frames=12,
        seed=3,
    )


def _junk(folder, name):
    path = folder / name
    path.write_bytes(b"this is not a video")
    return path


def _no_videos(synth, tmp):
    return "".join(f"{_junk(tmp, f'j{i}.mp4')} {c}\n" for i, c in enumerate(["a", "b", "a"]))


def _class_without_videos(synth, tmp):
    good = "".join(f"{synth.root / line}\n" for line in synth.train_list.read_text().splitlines())
    return good + f"{_junk(tmp, 'j.mp4')} zoom_out\n{tmp / 'missing.mp4'} zoom_out\n"


UNTRAINABLE = [
    ("no readable video", _no_videos, "none of the 3 training videos can be read"),
    (
        "a class without a readable video",
        _class_without_videos,
        "1 class(es) have no readable training video: 'zoom_out'",
    ),
]


@pytest.mark.parametrize("make_list, words", [c[1:] for c in UNTRAINABLE], ids=[c[0] for c in UNTRAINABLE])
def test_untrainable_data_fails_before_the_first_epoch(synth, tmp_path, capsys, make_list, words):
    from videozoo.cli.main import main

    data = tmp_path / "train.txt"
    data.write_text(make_list(synth, tmp_path))
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert words in err and str(data) in err and err.count("error:") == 1 and "Traceback" not in err
    assert not (out / "model.pth").exists() and not (out / "checkpoint_last.pth").exists()
    assert "epoch 1" not in err


def test_a_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(synth, tmp_path, monkeypatch):
    out = tmp_path / "run"
    argv = ["--data", str(synth.train_list), "--out", str(out), *TINY]
    cfg = config_from_args(add_cli_arguments(argparse.ArgumentParser()).parse_args(argv))
    real, calls = nn.CrossEntropyLoss.forward, []

    def forward(self, logits, labels):
        calls.append(1)
        loss = real(self, logits, labels)
        return loss * float("nan") if len(calls) == 3 else loss  # the first step of epoch 2

    monkeypatch.setattr(nn.CrossEntropyLoss, "forward", forward)
    with pytest.raises(RunError) as e:
        train(cfg)
    message = str(e.value)
    for words in ("became NaN in epoch 2, step 3", "last good checkpoint", "(epoch 1)", "no model.pth"):
        assert words in message
    state = torch.load(out / "checkpoint_last.pth", weights_only=True)
    assert state["train_state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())
    assert not (out / "model.pth").exists()
