"""Runs and their output folders: locked, tied to their settings, resumable after kill -9, and a full
disk or a bad --out stops them cleanly. Evaluation, feature extraction and training alike."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import videozoo
from videogen import make_video
from videozoo.jobs.evaluate import EvalConfig, evaluate
from videozoo.jobs.features import FeatureConfig, extract_features
from videozoo.jobs.records import RecordWriter, read_records
from videozoo.jobs.rundir import ResumeMismatchError, RunError, RunLock, RunLockedError

MODEL = "x3d_xs"
LABELS = ("abseiling", "air drumming", "archery", "bowling", "zumba")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}

# A command line run in a child process whose decoding (or training sample) is slowed down, so
# that a kill -9 lands in the middle of the run.
SLOW_CHILD = """
import sys, time
import videozoo.engine.engine as engine
import videozoo.train.data as train_data
delay = float(sys.argv[1])
real_load = engine.load_views
engine.load_views = lambda *a, **k: (time.sleep(delay), real_load(*a, **k))[1]
real_item = train_data.ClipDataset.__getitem__
train_data.ClipDataset.__getitem__ = lambda self, i: (time.sleep(delay), real_item(self, i))[1]
from videozoo.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_model(seed: int):
    """x3d_xs at half its width and depth, 5 classes, on 64-pixel clips: the same code paths, much faster."""
    import dataclasses

    torch.manual_seed(seed)
    spec = videozoo.get_spec(MODEL)
    model = spec.build(num_classes=len(LABELS), width_factor=0.5, depth_factor=0.5, head_width=32)
    model.model_name, model.class_names = MODEL, list(LABELS)
    model.input_config = dataclasses.replace(spec.input, short_side=64, crop_size=64)
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(videozoo.save_model(small_model(0), tmp_path_factory.mktemp("w") / "x3d_xs.pth"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    lines = []
    for i, label in enumerate(LABELS):
        make_video(root / f"v {i}.mp4", num_frames=20 + 5 * i, width=64, height=48, pattern="noise", seed=i)
        lines.append(f"v {i}.mp4 {label}")
    (root / "broken.mp4").write_bytes(b"not a video")
    lines.insert(2, "broken.mp4 archery")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


def _eval_cfg(weights, dataset, out, **kw):
    return EvalConfig(model=MODEL, data=str(dataset), out=str(out), weights=weights, workers=0, precision="fp32", **kw)


def _feat_cfg(weights, dataset, out, **kw):
    return FeatureConfig(
        model=MODEL, data=str(dataset), out=str(out), weights=weights, workers=0, precision="fp32", views="1x3", **kw
    )


def _cli(job, weights, dataset, out, *more):
    return [
        job,
        "--model",
        MODEL,
        "--weights",
        weights,
        "--data",
        str(dataset),
        "--out",
        str(out),
        "--workers",
        "0",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        *more,
    ]


def _untimed(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_records(path)]


def _metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    m["config"].pop("out")
    return m


def _kill_when(cmd: list[str], ready, delay: float, timeout: float = 240) -> None:
    """Run `cmd` in a slowed-down child and kill -9 it as soon as `ready()` holds."""
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_CHILD, str(delay), *cmd], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    t0 = time.monotonic()
    try:
        while not ready():
            assert child.poll() is None, (
                f"the run ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
            )
            assert time.monotonic() - t0 < timeout
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()


# -- kill -9, then --resume: the same results as an uninterrupted run ----------------------------------


def test_evaluate_killed_and_resumed_equals_uninterrupted(weights, dataset, tmp_path):
    evaluate(_eval_cfg(weights, dataset, tmp_path / "full"))
    out = tmp_path / "killed"
    pred = out / "predictions.jsonl"
    _kill_when(_cli("evaluate", weights, dataset, out), lambda: len(read_records(pred)) >= 2, delay=0.4)
    assert 2 <= len(read_records(pred)) < 6
    evaluate(_eval_cfg(weights, dataset, out, resume=True))  # the killed run's lock is gone with it
    assert _untimed(pred) == _untimed(tmp_path / "full" / "predictions.jsonl")
    assert _metrics(out) == _metrics(tmp_path / "full")


def test_features_killed_and_resumed_equals_uninterrupted(weights, dataset, tmp_path):
    extract_features(_feat_cfg(weights, dataset, tmp_path / "full"))
    out = tmp_path / "killed"
    _kill_when(
        _cli("features", weights, dataset, out, "--views", "1x3"),
        lambda: len(read_records(out / "index.jsonl")) >= 2,
        delay=0.4,
    )
    extract_features(_feat_cfg(weights, dataset, out, resume=True))
    for name in ("clip_features.npy", "video_features.npy", "index.json"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


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
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from videozoo.data.synth import make_dataset

    return make_dataset(
        tmp_path_factory.mktemp("synth"),
        classes=("move_left", "move_right", "zoom_in"),
        videos_per_class=3,
        size=(32, 32),
        num_frames=12,
        seed=3,
    )


def _train_argv(synth, out, *more):
    return [
        "train",
        "--model",
        MODEL,
        "--data",
        str(synth.train_list),
        "--val-data",
        str(synth.val_list),
        "--out",
        str(out),
        *TINY,
        *more,
    ]


def _train_rows(out: Path) -> list[list[str]]:
    rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()]
    timing = [rows[0].index("seconds"), rows[0].index("samples_per_s")]
    return [[c for i, c in enumerate(r) if i not in timing] for r in rows]


def test_train_killed_and_resumed_equals_uninterrupted(synth, tmp_path):
    from videozoo.cli.main import main
    from videozoo.weights.checkpoint import read_checkpoint

    assert main(_train_argv(synth, tmp_path / "full")) == 0
    out = tmp_path / "killed"
    _kill_when(_train_argv(synth, out), lambda: (out / "checkpoint_last.pth").exists(), delay=0.05)
    assert not (out / "model.pth").exists()
    assert main(_train_argv(synth, out, "--resume")) == 0
    full, resumed = read_checkpoint(tmp_path / "full" / "model.pth"), read_checkpoint(out / "model.pth")
    assert all(torch.equal(full.state_dict[k], resumed.state_dict[k]) for k in full.state_dict)
    assert _train_rows(out) == _train_rows(tmp_path / "full")


# -- the lock ---------------------------------------------------------------------------------------------

HOLD_LOCK = (
    "import sys, time; from videozoo.jobs.rundir import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('locked', flush=True); time.sleep(float(sys.argv[2]))"
)


def _holder(out: Path, seconds: float) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out), str(seconds)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_into_a_locked_folder_stops_naming_the_owner(weights, dataset, tmp_path, capsys):
    from videozoo.cli.main import main

    out = tmp_path / "busy"
    holder = _holder(out, 60)
    try:
        for argv in (_cli("evaluate", weights, dataset, out), _cli("features", weights, dataset, out)):
            t0 = time.monotonic()
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert f"pid {holder.pid}" in err and "--wait" in err and str(out) in err
            assert err.count("error:") == 1 and time.monotonic() - t0 < 10  # at once, not after loading
        with pytest.raises(RunLockedError):
            from videozoo.train import TrainConfig, train

            train(TrainConfig(model=MODEL, data="x.txt", out=str(out)))
    finally:
        holder.kill()  # kill -9: the kernel releases its lock
        holder.wait()
    with RunLock(out):
        pass


def test_wait_queues_behind_the_owner(weights, dataset, tmp_path):
    out = tmp_path / "queued"
    holder = _holder(out, 1.5)
    t0 = time.monotonic()
    metrics = evaluate(_eval_cfg(weights, dataset, out, wait=True, limit=1))
    assert time.monotonic() - t0 >= 1.0 and holder.wait() == 0
    assert metrics["videos"] == 1


# -- --resume checks the first run's identity -------------------------------------------------------------


def test_resume_with_other_settings_is_refused_listing_each(weights, dataset, tmp_path):
    out = tmp_path / "e"
    evaluate(_eval_cfg(weights, dataset, out, limit=2))
    other = str(videozoo.save_model(small_model(1), tmp_path / "other.pth"))
    changed = tmp_path / "list.txt"
    changed.write_text(dataset.read_text().replace("zumba", "abseiling"))
    for video in Path(dataset).parent.glob("*.mp4"):
        (tmp_path / video.name).symlink_to(video)
    cfg = EvalConfig(
        model=MODEL,
        data=str(changed),
        out=str(out),
        weights=other,
        workers=0,
        precision="fp32",
        views="2x1",
        resume=True,
    )
    with pytest.raises(ResumeMismatchError) as e:
        evaluate(cfg)
    message = str(e.value)
    for words in ("weights_sha256", "data_sha256", "views: '1x1' in the first run, '2x1' now"):
        assert words in message
    assert "model:" not in message and "precision" not in message
    assert len(read_records(out / "predictions.jsonl")) == 2  # nothing was touched


def test_resume_of_features_and_training_checks_identity_too(weights, dataset, synth, tmp_path):
    out = tmp_path / "f"
    extract_features(_feat_cfg(weights, dataset, out))
    with pytest.raises(ResumeMismatchError, match="views: '1x3' in the first run, '1x1' now"):
        extract_features(
            FeatureConfig(
                model=MODEL,
                data=str(dataset),
                out=str(out),
                weights=weights,
                workers=0,
                precision="fp32",
                views="1x1",
                resume=True,
            )
        )
    import argparse

    from videozoo.cli.main import main
    from videozoo.train import train
    from videozoo.train.config import add_cli_arguments, config_from_args

    data = tmp_path / "train.txt"
    data.write_text("".join(f"{synth.root / line}\n" for line in synth.train_list.read_text().splitlines()))
    argv = _train_argv(synth, tmp_path / "t", "--epochs", "1")  # the last --epochs wins
    argv[argv.index("--data") + 1] = str(data)
    assert main(argv) == 0
    data.write_text(data.read_text() + "# one more line\n")
    resume = config_from_args(
        add_cli_arguments(argparse.ArgumentParser()).parse_args([*argv[1:], "--epochs", "2", "--resume"])
    )
    with pytest.raises(ResumeMismatchError, match="data_sha256: .* in the first run, .* now"):
        train(resume)


# -- --out that cannot be used, and a disk that fills up ---------------------------------------------------


def _unwritable(tmp_path: Path) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("")
    except OSError:
        return folder / "out"
    (folder / "probe").unlink()
    for candidate in ("/sys/videozoo-test", "/proc/videozoo-test"):  # root may write anywhere else
        try:
            os.mkdir(candidate)
        except OSError:
            return Path(candidate)
        os.rmdir(candidate)
    pytest.skip("no folder here refuses writes")


BAD_OUT = [
    ("a file", lambda t: (t / "file").write_text("x") and t / "file", "is a file, not a folder"),
    ("under a file", lambda t: (t / "file").write_text("x") and t / "file" / "out", "is a file, so no folder"),
    ("unwritable", _unwritable, "cannot write there"),
]


@pytest.mark.parametrize("job", ["evaluate", "features", "train"])
@pytest.mark.parametrize("make_out, words", [c[1:] for c in BAD_OUT], ids=[c[0] for c in BAD_OUT])
def test_an_unusable_out_is_an_error_before_work_starts(
    weights, dataset, synth, tmp_path, capsys, job, make_out, words
):
    from videozoo.cli.main import main

    out = make_out(tmp_path)
    argv = _train_argv(synth, out) if job == "train" else _cli(job, weights, dataset, out)
    t0 = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and words in err and err.count("error:") == 1 and "Traceback" not in err
    assert time.monotonic() - t0 < 5


def _disk_full_after(monkeypatch, n: int):
    real = RecordWriter.write

    def write(self, record):
        if self.written >= n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, record)

    monkeypatch.setattr(RecordWriter, "write", write)


@pytest.mark.parametrize("job", ["evaluate", "features"])
def test_a_full_disk_stops_cleanly_keeping_every_finished_record(weights, dataset, tmp_path, monkeypatch, capsys, job):
    from videozoo.cli.main import main

    run, cfg = (evaluate, _eval_cfg) if job == "evaluate" else (extract_features, _feat_cfg)
    records = "predictions.jsonl" if job == "evaluate" else "index.jsonl"
    run(cfg(weights, dataset, tmp_path / "full"))
    out = tmp_path / "full_disk"
    _disk_full_after(monkeypatch, 3)
    argv = _cli(job, weights, dataset, out, *(["--views", "1x3"] if job == "features" else []))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and err.count("error:") == 1
    assert len(read_records(out / records)) == 3
    monkeypatch.undo()
    run(cfg(weights, dataset, out, resume=True))
    if job == "evaluate":
        assert _untimed(out / records) == _untimed(tmp_path / "full" / records)
    else:
        assert np.array_equal(np.load(out / "clip_features.npy"), np.load(tmp_path / "full" / "clip_features.npy"))


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(synth, tmp_path, monkeypatch):
    import argparse

    import videozoo.train.loop as loop
    from videozoo.train import TrainConfig, train
    from videozoo.train.config import add_cli_arguments, config_from_args

    argv = _train_argv(synth, tmp_path / "t")[1:]
    cfg = config_from_args(add_cli_arguments(argparse.ArgumentParser()).parse_args(argv))
    real, calls = loop.save_training_checkpoint, []

    def save(path, run, position):
        calls.append(position.epoch)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, run, position)

    monkeypatch.setattr(loop, "save_training_checkpoint", save)
    with pytest.raises(RunError, match=r"(?s)No space left on device.*previous checkpoint_last.pth is kept"):
        train(cfg)
    assert torch.load(tmp_path / "t" / "checkpoint_last.pth", weights_only=True)["train_state"]["epoch"] == 1
    assert not (tmp_path / "t" / "model.pth").exists()
    assert not TrainConfig().wait
