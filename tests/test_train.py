"""Training: config merging, schedules, exact resumption, fine-tuning, bad videos, several processes.

Runs use a reduced X3D (tens of thousands of parameters) on 4-frame 24-pixel clips of a few
synthetic videos, so each epoch takes about a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

import videozoo
from videozoo.data.synth import make_dataset
from videozoo.train import TrainConfig, add_cli_arguments, config_from_args, load_config, train
from videozoo.train.config import config_from_dict
from videozoo.train.data import ClipDataset, Skipped, collate_clips, sample_generator
from videozoo.train.model import resolve_input
from videozoo.train.schedule import ScheduleSpec
from videozoo.weights.checkpoint import read_checkpoint

TINY_ARCH = {"width_factor": 0.5, "depth_factor": 0.5, "head_width": 32}
CLASSES = ("move_left", "move_right", "zoom_in")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The models here are tiny: a second OpenMP thread gains little, and on a busy machine
    # spinning threads can slow every step tenfold (see docs/training.md, CPU threads).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return make_dataset(root, classes=CLASSES, videos_per_class=4, size=(32, 32), num_frames=12, seed=3)


def tiny(synth, out, **changes) -> TrainConfig:
    cfg = TrainConfig(
        model="x3d_xs",
        data=str(synth.train_list),
        val_data=str(synth.val_list),
        out=str(out),
        epochs=3,
        batch_size=3,
        num_workers=0,
        lr=0.05,
        warmup_epochs=1,
        milestones=[2],
        arch=dict(TINY_ARCH),
        num_frames=4,
        sampling_rate=2,
        fps=15,
        crop_size=24,
        short_side=28,
        progress="none",
        tensorboard=False,
        plot=False,
    )
    return dataclasses.replace(cfg, **changes)


def weights_of(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).state_dict


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


# --- configuration ---------------------------------------------------------------------------------


def parse(argv):
    return config_from_args(add_cli_arguments(argparse.ArgumentParser()).parse_args(argv))


def test_command_line_wins_over_yaml_over_defaults(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        "model: x3d_xs\ndata: d.txt\nepochs: 7\nbatch-size: 4\nschedule: cosine\narch: {width_factor: 0.5}\n"
    )
    cfg = parse(
        [
            "--config",
            str(yaml_file),
            "--out",
            "o",
            "--epochs",
            "9",
            "--arch",
            "depth_factor=0.5",
            "--freeze-bn",
            "--milestones",
            "3",
            "5",
        ]
    )
    assert (cfg.model, cfg.data, cfg.out) == ("x3d_xs", "d.txt", "o")
    assert cfg.epochs == 9 and cfg.batch_size == 4 and cfg.schedule == "cosine"
    assert cfg.arch == {"width_factor": 0.5, "depth_factor": 0.5}
    assert cfg.freeze_bn is True and cfg.milestones == [3, 5]
    assert cfg.momentum == 0.9 and cfg.weight_decay == 1e-4 and cfg.warmup_epochs == 10
    assert parse(["--model", "m", "--data", "d", "--out", "o", "--lr", "none"]).lr is None
    assert load_config(yaml_file, epochs=2).epochs == 2


def test_unknown_and_mistyped_settings_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x3d_xs\nepocs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="epocs, learning_rate"):
        parse(["--config", str(bad)])
    with pytest.raises(ValueError, match="batch_size: expected an integer"):
        config_from_dict({"batch_size": "many"})
    with pytest.raises(ValueError, match="--data, --out"):
        parse(["--model", "x3d_xs"])


def test_learning_rate_schedules():
    s = ScheduleSpec(
        steps_per_epoch=10, epochs=45, warmup_epochs=10, warmup_factor=0.001, kind="step", milestones=(20, 30)
    )
    assert s.factor(0) == pytest.approx(0.001)
    assert s.factor(50) == pytest.approx(0.001 + 0.999 * 0.5)
    assert s.factor(100) == 1.0 and s.factor(199) == 1.0
    assert s.factor(200) == pytest.approx(0.1) and s.factor(300) == pytest.approx(0.01)
    c = dataclasses.replace(s, kind="cosine")
    assert c.factor(100) == 1.0
    assert c.factor(275) == pytest.approx(0.5)
    assert c.factor(449) == pytest.approx(0.0, abs=1e-4)


def test_clip_and_arch_overrides():
    spec = videozoo.get_spec("x3d_xs")
    cfg = TrainConfig(model="x3d_xs", data="d", out="o", num_frames=6, crop_size=48, short_side=56)
    inp = resolve_input(spec.input, cfg)
    assert (inp.num_frames, inp.crop_size, inp.train_crop_size, inp.short_side) == (6, 48, 48, 56)
    assert inp.train_jitter == (56, 70)  # the registry's 182..228 range, scaled
    with pytest.raises(ValueError, match="larger than"):
        resolve_input(spec.input, dataclasses.replace(cfg, crop_size=64))


# --- data ------------------------------------------------------------------------------------------


def test_training_samples_are_a_function_of_seed_epoch_and_index(synth):
    spec = videozoo.get_spec("x3d_xs")
    inp = resolve_input(spec.input, tiny(synth, "o"))
    videos = videozoo.data.datasets.load_video_list(synth.train_list)
    ds = ClipDataset(videos, inp, train=True, seed=5)
    ds.set_epoch(1)
    a, label, index = ds[2]
    assert a.shape == (3, 4, 24, 24) and a.dtype == torch.float32 and index == 2
    assert torch.equal(a, ds[2][0])
    ds.set_epoch(2)
    assert not torch.equal(a, ds[2][0])
    g1, g2 = sample_generator(5, 1, 2), sample_generator(5, 1, 2)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    # hflip 1 mirrors every clip that hflip 0 leaves alone, with the same crop and start.
    never = ClipDataset(videos, inp, train=True, seed=5, hflip=0.0)
    always = ClipDataset(videos, inp, train=True, seed=5, hflip=1.0)
    assert torch.equal(never[2][0].flip(-1), always[2][0])


def test_collate_two_pathways_and_skipped():
    slow, fast = torch.zeros(3, 2, 8, 8), torch.ones(3, 8, 8, 8)
    batch = collate_clips([([slow, fast], 1, 0), Skipped(1, "bad.mp4", "broken"), ([slow, fast], 0, 2)])
    assert [tuple(x.shape) for x in batch.inputs] == [(2, 3, 2, 8, 8), (2, 3, 8, 8, 8)]
    assert batch.labels.tolist() == [1, 0] and batch.indices.tolist() == [0, 2]
    assert [s.path for s in batch.skipped] == ["bad.mp4"]
    assert collate_clips([Skipped(0, "x", "y")]).inputs is None


# --- training runs --------------------------------------------------------------------------------


def test_resume_reaches_the_same_weights(synth, tmp_path):
    straight = train(tiny(synth, tmp_path / "straight"))
    assert straight.epochs_completed == 3 and not straight.interrupted
    out = tmp_path / "straight"
    for name in ("config.yaml", "metrics.csv", "checkpoint_last.pth", "model.pth"):
        assert (out / name).is_file(), name
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,samples_per_s")
    assert len(rows) == 4
    reference = weights_of(out / "model.pth")

    # Two epochs, then the third on resumption (at an epoch boundary).
    train(tiny(synth, tmp_path / "split", epochs=2))
    resumed = train(tiny(synth, tmp_path / "split", resume=True))
    assert resumed.epochs_completed == 3
    assert max_difference(reference, weights_of(tmp_path / "split" / "model.pth")) <= 1e-6
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]

    # SIGTERM in the middle of epoch 2: stop at the step boundary, save, resume.
    def terminate(epoch, step):
        if step == 5:
            signal.raise_signal(signal.SIGTERM)

    stopped = train(tiny(synth, tmp_path / "killed"), on_step=terminate)
    assert stopped.interrupted and stopped.model_path is None and stopped.epochs_completed == 1
    state = torch.load(tmp_path / "killed" / "checkpoint_last.pth", weights_only=True)
    assert (state["train_state"]["epoch"], state["train_state"]["batch"]) == (1, 2)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
    train(tiny(synth, tmp_path / "killed", resume=True))
    assert max_difference(reference, weights_of(tmp_path / "killed" / "model.pth")) <= 1e-6
    metrics = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 4

    with pytest.raises(ValueError, match="batch_size"):
        train(tiny(synth, tmp_path / "killed", resume=True, batch_size=2))
    with pytest.raises(ValueError, match="--resume"):
        train(tiny(synth, tmp_path / "straight"))


def test_accumulation_matches_a_larger_batch(synth, tmp_path):
    # Frozen BatchNorm and no dropout make every sample's gradient independent of its batch mates.
    common = dict(epochs=1, warmup_epochs=0, freeze_bn=True, dropout=0.0, val_data=None)
    big = train(tiny(synth, tmp_path / "big", batch_size=4, **common))
    small = train(tiny(synth, tmp_path / "acc", batch_size=2, accumulate=2, **common))
    assert max_difference(weights_of(big.model_path), weights_of(small.model_path)) < 1e-6
    # Frozen BatchNorm: running statistics never move.
    bn = [k for k in weights_of(big.model_path) if k.endswith("running_mean")]
    fresh = videozoo.get_spec("x3d_xs").build(num_classes=3, num_frames=4, crop_size=24, **TINY_ARCH).state_dict()
    assert all(torch.equal(weights_of(big.model_path)[k], fresh[k]) for k in bn)


def test_finetune_keeps_class_names_and_skips_bad_videos(synth, tmp_path, capsys):
    # A "pretrained" 400-class checkpoint of the registry's architecture.
    k400 = videozoo.create_model("x3d_xs")
    pretrained = k400.state_dict()
    ckpt = videozoo.save_model(k400, tmp_path / "k400.pth")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 2048)
    train_list = tmp_path / "train.txt"
    lines = [f"{synth.root / line.split()[0]} {line.split()[1]}" for line in synth.train_list.read_text().splitlines()]
    # zoom_in keeps one readable video: a class with none stops the run before it starts.
    zoom_in = next(line for line in lines if line.endswith(" zoom_in"))
    train_list.write_text("\n".join(lines[:5] + [zoom_in, f"{bad} zoom_in"]) + "\n")
    # lr 0 and frozen BatchNorm: everything but the new classifier must stay the checkpoint's.
    cfg = tiny(
        synth,
        tmp_path / "ft",
        data=str(train_list),
        val_data=None,
        weights=str(ckpt),
        arch={},
        epochs=1,
        lr=0.0,
        freeze_bn=True,
    )
    result = train(cfg)
    assert result.skipped_videos == 1 and result.history[-1]["skipped_videos"] == 1
    assert "broken.mp4" in capsys.readouterr().err
    model = videozoo.create_model("x3d_xs", weights=result.model_path)
    assert model.class_names == list(CLASSES) and model.num_classes == 3
    trained = weights_of(result.model_path)
    assert (
        max_difference(
            {k: v for k, v in trained.items() if "proj" not in k},
            {k: v for k, v in pretrained.items() if "proj" not in k},
        )
        == 0
    )
    assert trained["blocks.5.proj.weight"].shape == (3, 2048)


def test_bf16_training_runs(synth, tmp_path):
    result = train(tiny(synth, tmp_path / "bf16", epochs=1, precision="bf16", val_data=None))
    assert math.isfinite(result.history[-1]["train_loss"])


# --- several processes ----------------------------------------------------------------------------


def test_two_processes_match_one_process_with_the_global_batch(synth, tmp_path):
    common = dict(epochs=2, freeze_bn=True, dropout=0.0, warmup_epochs=0)
    # Eight videos: both processes get whole batches, without the padding of an uneven split.
    eight = tmp_path / "eight.txt"
    eight.write_text("".join(f"{synth.root / line}\n" for line in synth.train_list.read_text().splitlines()[:8]))
    single = train(tiny(synth, tmp_path / "one", data=str(eight), batch_size=4, **common))
    cfg = tiny(synth, tmp_path / "two", data=str(eight), batch_size=2, **common)
    args = [
        "--model",
        cfg.model,
        "--data",
        cfg.data,
        "--val-data",
        cfg.val_data,
        "--out",
        cfg.out,
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--lr",
        str(cfg.lr),
        "--warmup-epochs",
        "0",
        "--milestones",
        "2",
        "--freeze-bn",
        "--dropout",
        "0",
        "--arch",
        *[f"{k}={v}" for k, v in TINY_ARCH.items()],
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
        "log",
        "--no-tensorboard",
        "--no-plot",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "videozoo.train",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "2 process(es)" in proc.stderr
    out = tmp_path / "two"
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "checkpoint_last.pth",
        "config.yaml",
        "manifest.json",
        "metrics.csv",
        "model.pth",
    ]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3
    assert max_difference(weights_of(single.model_path), weights_of(out / "model.pth")) < 1e-5
    # Validation over both shards equals the single process's.
    one_val = single.history[-1]["val_acc"]
    assert math.isclose(float(rows[-1].split(",")[5]), one_val, abs_tol=1e-3)
