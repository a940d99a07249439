"""Never hang: decoding is safe across fork, and a stuck worker is stopped, named and skipped.

PyAV >= 18 converts frames on a pool of swscale slice threads by default and keeps the context per
Python thread; a process that converted a frame and then forked left children that waited forever
on the first conversion. Every test here converts a frame in this process the way any other code
would (PyAV's defaults) before worker processes start, so on an unsafe build each would hang;
the per-test time limit turns such a hang into one failed test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import videozoo
from videogen import make_video
from videozoo.data.synth import make_dataset
from videozoo.data.workers import DEFAULT_STALL_SECONDS, WatchedLoader, WorkerStalled, check_stall_seconds
from videozoo.io import open_video
from videozoo.io.rgb import RGBConverter
from videozoo.jobs.evaluate import EvalConfig, evaluate, read_records
from videozoo.jobs.rundir import RunError
from videozoo.train import TrainConfig, train

MODEL = "x3d_xs"
TINY_ARCH = {"width_factor": 0.5, "depth_factor": 0.5, "head_width": 32}


def convert_like_any_other_code(path: Path, frames: int = 4) -> None:
    """What a notebook or another library does before our workers start: PyAV's own defaults."""
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            frame.to_ndarray(format="rgb24")
            if i + 1 >= frames:
                break


@pytest.fixture(scope="module")
def big_video(tmp_path_factory):
    # Large enough that swscale splits the conversion into slices on its thread pool.
    return make_video(tmp_path_factory.mktemp("big") / "big.mp4", num_frames=8, width=640, height=360, pattern="noise")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = videozoo.create_model(MODEL)
    model.input_config = dataclasses.replace(model.input_config, short_side=72, crop_size=64)
    return str(videozoo.save_model(model, tmp_path_factory.mktemp("w") / "x3d_xs.pth"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = [
        make_video(root / f"v{i}.mp4", num_frames=40 + 8 * i, width=80, height=64, pattern="noise", seed=i)
        for i in range(4)
    ]
    labels = ["abseiling", "archery", "bowling", "zumba"]
    (root / "list.txt").write_text("".join(f"{p.name} {lab}\n" for p, lab in zip(paths, labels, strict=True)))
    return paths


def _wait(pid: int, seconds: float) -> int | None:
    """The child's exit status, or None if it is still running after ``seconds`` (then it is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
@pytest.mark.parametrize("child_uses", ["videozoo", "pyav defaults"])
def test_a_forked_child_decodes_after_the_parent_converted(big_video, child_uses):
    convert_like_any_other_code(big_video)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if decoding finishes
        code = 1
        try:
            if child_uses == "videozoo":
                with open_video(big_video) as v:
                    code = 0 if v.get_clip(0.0, 0.2).frames.shape[1] > 0 else 1
            else:
                convert_like_any_other_code(big_video)
                code = 0
        finally:
            os._exit(code)
    status = _wait(pid, 20)
    assert status is not None, f"the forked child hung decoding ({child_uses}, PyAV {av.__version__})"
    assert os.waitstatus_to_exitcode(status) == 0


def test_conversion_equals_pyav_and_works_without_a_threads_argument(big_video, monkeypatch):
    with av.open(str(big_video)) as c:
        frame = next(c.decode(video=0))
        reference = frame.to_ndarray(format="rgb24").transpose(2, 0, 1)
        assert np.array_equal(RGBConverter()(frame), reference)

        import videozoo.io.rgb as rgb

        class OldReformatter:  # PyAV < 18: reformat() has no ``threads``
            def reformat(self, frame, format=None, **kwargs):
                if "threads" in kwargs:
                    raise TypeError("reformat() got an unexpected keyword argument 'threads'")
                return frame.reformat(format=format)

        monkeypatch.setattr(rgb, "_THREADS_ACCEPTED", None)
        converter = RGBConverter()
        monkeypatch.setattr(converter, "_context", lambda: OldReformatter())
        assert np.array_equal(converter(frame), reference)
        assert rgb._THREADS_ACCEPTED is False


# --- one process: predict, evaluate with workers, the CLI, training with loader workers --------------


def _tiny_train(root: Path, out: Path) -> TrainConfig:
    data = make_dataset(root, classes=("move_left", "move_right"), videos_per_class=3, size=(32, 32), num_frames=12)
    return TrainConfig(
        model=MODEL,
        data=str(data.train_list),
        val_data=str(data.val_list),
        out=str(out),
        epochs=2,
        batch_size=2,
        num_workers=2,
        lr=0.05,
        warmup_epochs=0,
        arch=dict(TINY_ARCH),
        num_frames=4,
        sampling_rate=2,
        fps=15,
        crop_size=24,
        short_side=28,
        progress="none",
        tensorboard=False,
        plot=False,
        check_videos=False,
    )


SEQUENCE = """
import json, sys
from pathlib import Path
import videozoo
from videozoo.jobs.evaluate import EvalConfig, evaluate
from videozoo.train import TrainConfig, train
args = json.loads(sys.argv[1])
m = evaluate(EvalConfig(**args["evaluate"]))
r = train(TrainConfig(**args["train"]))
print(json.dumps({"evaluate": m["video_top1"], "history": r.history}))
"""


def test_predict_then_workers_in_one_process_finish_and_match_a_fresh_process(
    weights, videos, big_video, tmp_path, capsys
):
    from videozoo.cli import main

    convert_like_any_other_code(big_video)
    first = videozoo.predict(str(videos[0]), model=MODEL, weights=weights)  # decodes in this process
    assert len(first) == 5

    data = videos[0].parent / "list.txt"
    eval_args = dict(model=MODEL, data=str(data), out=str(tmp_path / "eval"), weights=weights, workers=2)
    metrics = evaluate(EvalConfig(**eval_args))
    assert metrics["evaluated"] == 4 and metrics["failed"] == 0
    recs = read_records(tmp_path / "eval" / "predictions.jsonl")
    one_process = {r["index"]: r["top5"] for r in read_records(tmp_path / "eval" / "predictions.jsonl")}

    rc = main(["predict", *map(str, videos), "--model", MODEL, "--weights", weights, "--json", "--top-k", "3"])
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and [Path(e["video"]).name for e in entries] == [p.name for p in videos]
    assert [e["top_k"][0]["label"] for e in entries] == [r["top5"][0]["label"] for r in recs]

    cfg = _tiny_train(tmp_path / "synth", tmp_path / "train")
    result = train(cfg)
    assert result.epochs_completed == 2 and result.model_path is not None
    assert all(not np.isnan(row["val_acc"]) for row in result.history)

    # The same evaluate and training in a fresh process give the same figures.
    fresh_args = {
        "evaluate": {**eval_args, "out": str(tmp_path / "eval_fresh")},
        "train": {**dataclasses.asdict(cfg), "out": str(tmp_path / "train_fresh")},
    }
    proc = subprocess.run(
        [sys.executable, "-c", SEQUENCE, json.dumps(fresh_args)], capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["evaluate"] == metrics["video_top1"]
    assert {r["index"]: r["top5"] for r in read_records(tmp_path / "eval_fresh" / "predictions.jsonl")} == one_process
    for ours, theirs in zip(result.history, fresh["history"], strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-9), key


# --- the watchdog --------------------------------------------------------------------------------------


def _stick_on(monkeypatch, module, name: str, marker: str):
    """Make ``module.name(path, ...)`` sleep for an hour when the path contains ``marker``."""
    real = getattr(module, name)

    def stuck(path, *args, **kwargs):
        if marker in str(path):
            time.sleep(3600)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, name, stuck)


def test_a_stuck_video_becomes_an_error_entry_within_the_bound_and_the_others_finish(
    weights, videos, tmp_path, monkeypatch, capfd
):
    import videozoo.engine.engine as eng

    stuck = tmp_path / "stuck.mp4"
    stuck.write_bytes(videos[1].read_bytes())
    paths = [videos[0], stuck, videos[2], videos[3]]
    engine = videozoo.Engine.build(MODEL, weights=weights)
    expected = {str(p): engine.predict(p).top_k(3) for p in paths if p != stuck}

    _stick_on(monkeypatch, eng, "load_views", "stuck")
    t0 = time.monotonic()
    results = list(engine.map(paths, workers=2, stall_timeout=2))
    elapsed = time.monotonic() - t0
    assert [r.path for r in results] == [str(p) for p in paths]
    assert elapsed < 30, f"took {elapsed:.0f} s for a 2 s bound"
    bad = results[1]
    assert bad.prediction is None and str(stuck) in bad.error and "no progress for" in bad.error
    assert "--stall-timeout 2 s" in bad.error and "in stuck" in bad.error  # the innermost frame of its stack
    for r in results[:1] + results[2:]:
        assert r.error is None and r.prediction.top_k(3) == expected[r.path]
    err = capfd.readouterr().err
    assert str(stuck) in err and "stuck" in err and "File " in err  # the worker's stack, named


def test_evaluate_records_a_stalled_video_and_resumes_without_it(weights, videos, tmp_path, monkeypatch):
    import videozoo.engine.engine as eng

    root = tmp_path / "data"
    root.mkdir()
    for p in videos:
        (root / p.name).write_bytes(p.read_bytes())
    (root / "stuck.mp4").write_bytes(videos[0].read_bytes())
    (root / "list.txt").write_text("v0.mp4 abseiling\nstuck.mp4 archery\nv2.mp4 bowling\nv3.mp4 zumba\n")
    _stick_on(monkeypatch, eng, "load_views", "stuck")
    cfg = EvalConfig(
        model=MODEL, data=str(root / "list.txt"), out=str(tmp_path / "e"), weights=weights, workers=2, stall_timeout=2
    )
    m = evaluate(cfg)
    assert m["evaluated"] == 3 and m["failed"] == 1 and "stuck.mp4" in m["failures"][0]["error"]
    assert [r["index"] for r in read_records(tmp_path / "e" / "predictions.jsonl")] == [0, 1, 2, 3]


def test_training_stopped_by_a_stalled_worker_saves_and_names_the_video(tmp_path, monkeypatch):
    import videozoo.train.data as tdata

    cfg = _tiny_train(tmp_path / "synth", tmp_path / "run")
    cfg = dataclasses.replace(cfg, stall_timeout=2.0, epochs=1)
    victim = Path(cfg.data).read_text().split()[0]  # the first training video
    _stick_on(monkeypatch, tdata, "load_views", victim)
    t0 = time.monotonic()
    with pytest.raises(RunError) as e:
        train(cfg)
    assert time.monotonic() - t0 < 60
    message = str(e.value)
    assert victim in message and "no progress" in message and "--resume" in message
    assert (tmp_path / "run" / "checkpoint_last.pth").exists()


def test_a_real_worker_crash_is_not_mistaken_for_a_stall():
    class Crashing(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                os._exit(3)
            return i

    loader = WatchedLoader(Crashing(), num_workers=2, batch_size=None, stall_seconds=5)
    with pytest.raises(RuntimeError) as e:
        list(loader)
    assert not isinstance(e.value, WorkerStalled)


@pytest.mark.parametrize(
    "value, message",
    [(0, "positive"), (-3, "positive"), (float("nan"), "positive"), (float("inf"), "finite"), ("soon", "not a number")],
)
def test_bad_stall_bounds_are_one_clear_error(value, message):
    with pytest.raises(ValueError, match=message) as e:
        check_stall_seconds(value)
    assert "--stall-timeout" in str(e.value)
    assert check_stall_seconds(None) == DEFAULT_STALL_SECONDS


def test_the_cli_flag_rejects_a_bad_bound(capsys):
    from videozoo.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "x.mp4", "--stall-timeout", "0"])
    assert "--stall-timeout" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_started_afresh_give_the_same_results(weights, videos, method, monkeypatch):
    monkeypatch.setenv("VIDEOZOO_WORKER_START", method)
    engine = videozoo.Engine.build(MODEL, weights=weights)
    fresh = [r.prediction.top_k(3) for r in engine.map(videos[:2], workers=2)]
    monkeypatch.setenv("VIDEOZOO_WORKER_START", "fork")
    forked = [r.prediction.top_k(3) for r in engine.map(videos[:2], workers=2)]
    assert fresh == forked


def test_a_bad_start_method_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("VIDEOZOO_WORKER_START", "thread")
    with pytest.raises(ValueError, match="VIDEOZOO_WORKER_START"):
        WatchedLoader(list(range(3)), num_workers=1)


def test_the_suite_has_a_per_test_time_limit(pytestconfig):
    # A hang becomes one failed test that names itself, well inside CI's limit.
    limit = float(pytestconfig.getini("timeout"))
    assert 0 < limit <= 900
