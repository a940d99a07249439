"""`videozoo doctor`: a healthy machine passes; a broken decoder, encoder, runtime or cached file fails
naming its check; a hung step is reported within its time limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from videozoo.cli import main
from videozoo.engine import resolve_device, resolve_precision
from videozoo.engine.openvino import auto_backend
from videozoo.io.errors import VideoDecodeError
from videozoo.jobs import doctor
from videozoo.models.registry import get_spec

ROOT = Path(__file__).resolve().parents[1]
SELF_TEST = ["write a test video", "decode in-process", "decode in a worker process", "run motion_tiny"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(capsys, *flags):
    code = main(["doctor", "--json", *flags])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_a_healthy_machine_passes_every_check(capsys):
    code, r, err = _run(capsys)
    assert code == 0 and r["ok"] and r["failed"] == [] and err == ""
    checks = {c["name"]: c for c in r["checks"]}
    assert [n for n in SELF_TEST if checks[n]["status"] == "ok"] == SELF_TEST
    assert "equal to this process's" in checks["decode in a worker process"]["detail"]
    assert checks["packaged weights motion_tiny.safetensors"]["status"] == "ok"
    # What auto picks is the engine's own decision.
    device = resolve_device("auto")
    precision = resolve_precision("auto", device, warn=False).name
    assert r["auto"] == {"device": str(device), "precision": precision, "backend": auto_backend(device, precision)}
    v = r["versions"]
    assert v["torch"] and v["av"] and "libavcodec" in v["ffmpeg"] and "python" in v
    assert set(r) >= {"cpu", "threads", "gpu", "weights_cache"}
    assert r["threads"]["torch_intra_op"] >= 1 and r["cpu"]["logical_cores"] >= 1
    # The text report says the same.
    assert main(["doctor", "--no-self-test"]) == 0
    text = capsys.readouterr().out
    assert "auto picks" in text and "all checks passed" in text and "libavcodec" in text


def _raise_decode(path):
    raise VideoDecodeError(path, "simulated broken decoder")


def _raise_in_workers(parent):
    real = doctor._decode

    def decode(path):
        if os.getpid() != parent:
            raise VideoDecodeError(path, "simulated broken decoder in a worker")
        return real(path)

    return decode


def _other_frames_in_workers(parent):
    real = doctor._decode

    def decode(path):
        frames = real(path)
        return frames if os.getpid() == parent else 255 - frames

    return decode


def _broken_encoder(*args, **kwargs):
    raise OSError("simulated: no H.264 encoder")


# (what is broken, how to break it, the checks that fail, words in the failure)
BROKEN = [
    ("decoder", lambda mp: mp.setattr(doctor, "_decode", _raise_decode), SELF_TEST[1:3], "simulated broken decoder"),
    (
        "decoder in workers only",
        lambda mp: mp.setattr(doctor, "_decode", _raise_in_workers(os.getpid())),
        ["decode in a worker process"],
        "broken decoder in a worker",
    ),
    (
        "worker decodes other frames",
        lambda mp: mp.setattr(doctor, "_decode", _other_frames_in_workers(os.getpid())),
        ["decode in a worker process"],
        "differ from those decoded in this process",
    ),
    ("encoder", lambda mp: mp.setattr(doctor, "write_video", _broken_encoder), ["write a test video"], "no H.264"),
]


@pytest.mark.parametrize("what, breaks, failing, words", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_step_fails_naming_it(capsys, monkeypatch, what, breaks, failing, words):
    breaks(monkeypatch)
    code, r, err = _run(capsys, "--step-timeout", "30")
    assert code == 1 and not r["ok"] and r["failed"] == failing
    for name in failing:
        assert f"videozoo doctor: {name} failed: " in err
    assert words in err
    if what == "encoder":  # nothing to decode: the later steps are skipped, not failed
        assert [c["status"] for c in r["checks"] if c["name"] in SELF_TEST[1:]] == ["skipped"] * 3


def test_a_damaged_cached_file_fails_the_cache_check(capsys, home):
    source = get_spec("s3d").weights["kinetics400"]  # published with a sha256 prefix
    path = home / "checkpoints" / source.filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the published file")
    (home / "checkpoints" / "mine.pth").write_bytes(b"placed by hand")
    code, r, err = _run(capsys, "--no-self-test")
    assert code == 1 and r["failed"] == ["weights cache"]
    assert f"{path}: sha256" in err and "does not match" in err
    status = {Path(e["file"]).name: e["status"] for e in r["weights_cache"]["checkpoints"]}
    assert status["mine.pth"] == "no registry source" and status[source.filename].startswith("damaged")


def test_damaged_packaged_weights_fail_naming_the_file(capsys, monkeypatch):
    def damaged(source):
        raise doctor.hub.IntegrityError(f"{source.url}: sha256 0000 does not match the published one (corrupted file)")

    monkeypatch.setattr(doctor.hub, "packaged_path", damaged)
    code, r, err = _run(capsys, "--no-self-test")
    assert code == 1 and r["failed"] == ["packaged weights motion_tiny.safetensors"]
    assert "packaged weights motion_tiny.safetensors failed: package://" in err and "corrupted file" in err


def test_a_runtime_that_is_installed_but_does_not_load_fails(capsys, monkeypatch):
    real = doctor._installed
    monkeypatch.setattr(doctor, "_installed", lambda dist: "9.9" if dist == "torchcodec" else real(dist))
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # importing it raises ImportError
    code, r, err = _run(capsys, "--no-self-test")
    assert code == 1 and r["failed"] == ["import torchcodec"] and "import torchcodec failed" in err


@pytest.fixture
def release():
    event = threading.Event()
    yield event
    event.set()  # lets the abandoned step finish


def test_a_hung_decoder_is_reported_within_its_limit(monkeypatch, release):
    parent, real = os.getpid(), doctor._decode

    def decode(path):
        if os.getpid() == parent:
            release.wait()  # stuck, as a decoder stuck in FFmpeg is
        return real(path)

    monkeypatch.setattr(doctor, "_decode", decode)
    limit = 1.5
    # Only the stuck step runs under the short limit: on a loaded machine the healthy steps can need more.
    real_step = doctor.run_step
    monkeypatch.setattr(
        doctor, "run_step", lambda name, fn, lim: real_step(name, fn, lim if name == "decode in-process" else 120)
    )
    t0 = time.monotonic()
    checks = {c.name: c for c in doctor.self_test(limit)}
    assert checks["decode in-process"].status == "hung"
    assert checks["decode in-process"].seconds < limit + 1
    assert "no result within 1.5 s" in checks["decode in-process"].detail
    assert checks["decode in a worker process"].status == "ok" and checks["run motion_tiny"].status == "ok"
    assert time.monotonic() - t0 < 180  # the stuck step was abandoned, not waited for


def test_the_command_reports_a_hang_and_exits_within_its_limit(tmp_path):
    # In a process of its own: after a hang the command leaves at once (os._exit), never waiting on the step.
    script = textwrap.dedent(
        """
        import sys, threading
        from videozoo.jobs import doctor
        from videozoo.cli import main
        doctor._decode = lambda path: threading.Event().wait()
        sys.exit(main(["doctor", "--step-timeout", "2"]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIDEOZOO_HOME": str(tmp_path / "home")}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    took = time.monotonic() - t0
    assert done.returncode == 1, done.stderr[-2000:]
    assert "videozoo doctor: decode in-process hung: no result within 2 s" in done.stderr
    assert "FAILED: decode in-process, decode in a worker process" in done.stdout
    assert took < 120
