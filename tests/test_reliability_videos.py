"""Difficult videos end to end: `videozoo predict` and `videozoo evaluate` on the embedded model.

One synthetic "move_right" scene is written in every way a real collection holds videos: variable
frame rate, a pause in the timestamps, rotation metadata (the pixels stored turned, so a model that
ignored the rotation would see the scene slide up, down or left), 10-bit and 4:4:4 pixel formats,
odd frame sizes, a damaged middle, a cut end, a frame folder with stray images. Each must be
predicted as move_right, with a warning where the file is damaged; a file with no picture in it
gets one error entry naming it, and the run goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from videogen import corrupt_bytes, make_audio_only, make_video, truncate
from videozoo.data.synth import render_video

LABEL = "move_right"
FPS = 15
FRAMES = 45  # 3 s: the middle window of 1x1 and all three of 3x3 lie inside
ENV = {**os.environ, "VIDEOZOO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def scene() -> np.ndarray:
    return render_video(LABEL, 0, size=(96, 128), num_frames=FRAMES).frames  # (T, H, W, 3)


def turned(frames: np.ndarray, degrees: int) -> np.ndarray:
    """The pixels to store so that a player, turning them by ``degrees`` counterclockwise, shows ``frames``."""
    return np.ascontiguousarray(np.rot90(frames, -(degrees // 90), axes=(1, 2)))


def paused(n: int) -> list[float]:
    """Timestamps with a 1.5 s pause half-way (a recording paused and resumed)."""
    half = n // 2
    return [i / FPS for i in range(half)] + [1.5 + i / FPS for i in range(half, n)]


def jittered(n: int) -> list[float]:
    """Variable frame rate: every third frame 20 ms late, every fifth 25 ms early."""
    return [i / FPS + (0.02 if i % 3 == 1 else 0.0) - (0.025 if i % 5 == 3 else 0.0) for i in range(n)]


def frame_folder(root: Path, frames: np.ndarray) -> Path:
    """img_00001.jpg... plus images that are not frames (a cover, a thumbnail)."""
    folder = root / "frames"
    folder.mkdir()
    for i, img in enumerate(frames):
        av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").save(str(folder / f"img_{i + 1:05d}.jpg"))
    av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24").save(str(folder / "cover.png"))
    av.VideoFrame.from_ndarray(np.full((16, 16, 3), 255, np.uint8), format="rgb24").save(str(folder / "thumb.jpg"))
    return folder


def encoder_has(codec: str, pix_fmt: str) -> bool:
    return pix_fmt in {f.name for f in (av.Codec(codec, "w").video_formats or ())}


# name -> (how the file is made, what it gets: "ok" = move_right, "warn" = move_right and a warning
# naming the file, else words of its one error entry)
CASES = {
    "plain h264 mp4": (lambda r, v: make_video(r / "plain.mp4", frames=v, fps=FPS), "ok"),
    "variable frame rate (mkv, B-frames)": (
        lambda r, v: make_video(r / "vfr.mkv", frames=v, timestamps=jittered(FRAMES), bframes=True),
        "ok",
    ),
    "variable frame rate (vp9 webm)": (
        lambda r, v: make_video(r / "vfr.webm", codec="vp9", frames=v, timestamps=jittered(FRAMES)),
        "ok",
    ),
    "a pause in the timestamps": (
        lambda r, v: make_video(r / "pause.mp4", frames=v, timestamps=paused(FRAMES)),
        "warn",
    ),
    "rotated 90": (lambda r, v: make_video(r / "rot90.mp4", frames=turned(v, 90), fps=FPS, rotate=90), "ok"),
    "rotated 180": (lambda r, v: make_video(r / "rot180.mkv", frames=turned(v, 180), fps=FPS, rotate=180), "ok"),
    "rotated 270": (lambda r, v: make_video(r / "rot270.mp4", frames=turned(v, 270), fps=FPS, rotate=270), "ok"),
    "10-bit 4:2:0 (ffv1)": (
        lambda r, v: make_video(r / "10bit.mkv", codec="ffv1", pix_fmt="yuv420p10le", frames=v, fps=FPS),
        "ok",
    ),
    "10-bit 4:2:0 (h264)": (
        lambda r, v: (
            make_video(r / "10bit.mp4", pix_fmt="yuv420p10le", frames=v, fps=FPS)
            if encoder_has("libx264", "yuv420p10le")
            else pytest.skip("this FFmpeg's x264 writes 8 bits only")
        ),
        "ok",
    ),
    "4:4:4 (h264)": (lambda r, v: make_video(r / "444.mp4", pix_fmt="yuv444p", frames=v, fps=FPS), "ok"),
    "10-bit 4:4:4 (ffv1)": (
        lambda r, v: make_video(r / "444-10.mkv", codec="ffv1", pix_fmt="yuv444p10le", frames=v, fps=FPS),
        "ok",
    ),
    "odd size 127x95 (ffv1)": (
        lambda r, v: make_video(r / "odd.mkv", codec="ffv1", frames=np.ascontiguousarray(v[:, :95, :127]), fps=FPS),
        "ok",
    ),
    "odd size 127x95 (mpeg4 avi)": (
        lambda r, v: make_video(r / "odd.avi", codec="mpeg4", frames=np.ascontiguousarray(v[:, :95, :127]), fps=FPS),
        "ok",
    ),
    "damaged middle (mpeg4 avi)": (
        lambda r, v: corrupt_bytes(make_video(r / "corrupt.avi", codec="mpeg4", frames=v, fps=FPS), length=1500),
        "warn",
    ),
    "cut end (mkv, 60% of the bytes)": (
        lambda r, v: truncate(make_video(r / "cut.mkv", frames=v, fps=FPS), keep=0.6),
        "warn",
    ),
    "frame folder with a cover and a thumbnail": (lambda r, v: frame_folder(r, v), "ok"),
    "audio only": (lambda r, v: make_audio_only(r / "audio.mka", seconds=1.0), "no video stream"),
    "random bytes named .mp4": (
        lambda r, v: (r / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096)) and r / "noise.mp4",
        "noise.mp4: ",
    ),
    "empty file": (lambda r, v: (r / "empty.mp4").write_bytes(b"") or r / "empty.mp4", "empty.mp4: "),
    "folder without frames": (lambda r, v: (r / "nothing").mkdir() or r / "nothing", "nothing: "),
    "named pipe": (lambda r, v: os.mkfifo(r / "pipe.mp4") or r / "pipe.mp4", "pipe.mp4: "),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("difficult")
    frames = scene()
    made = {}
    for name, (make, _) in CASES.items():
        try:
            made[name] = Path(make(root, frames))
        except pytest.skip.Exception:
            continue
    return made


def _run(args: list[str]) -> subprocess.CompletedProcess:
    # A named pipe must be refused at once: a hang here fails the test instead of the suite.
    return subprocess.run(
        [sys.executable, "-m", "videozoo", *args], capture_output=True, text=True, env=ENV, timeout=300
    )


@pytest.fixture(scope="module")
def predicted(videos):
    proc = _run(["predict", *map(str, videos.values()), "--model", "motion_tiny", "--json", "--threads", "1"])
    entries = {e["video"]: e for e in map(json.loads, proc.stdout.splitlines())}
    return proc, entries


@pytest.mark.parametrize("name", list(CASES))
def test_predict(videos, predicted, name):
    if name not in videos:
        pytest.skip("not writable with this FFmpeg")
    proc, entries = predicted
    path = str(videos[name])
    expect = CASES[name][1]
    entry = entries[path]
    warned = [line for line in proc.stderr.splitlines() if "warning" in line and path in line]
    if expect in ("ok", "warn"):
        assert "error" not in entry, entry
        assert entry["top_k"][0]["label"] == LABEL, entry["top_k"]
        assert bool(warned) == (expect == "warn"), warned
        if expect == "warn":
            assert entry["lost_frames"] > 0
    else:
        assert entry["error"].count(path) == 1 and expect in entry["error"], entry["error"]
        assert "Traceback" not in entry["error"]


def test_predict_run_as_a_whole(videos, predicted):
    proc, entries = predicted
    assert set(entries) == {str(p) for p in videos.values()}  # one entry per video, in any case
    assert proc.returncode == 1  # some videos failed
    assert "Traceback" not in proc.stderr


def test_cut_and_paused_files_say_how_their_clips_were_taken(videos, predicted):
    _, entries = predicted
    cut = entries[str(videos["cut end (mkv, 60% of the bytes)"])]
    assert any("before its declared duration" in note for note in cut["notes"]), cut
    pause = entries[str(videos["a pause in the timestamps"])]
    assert any("its timestamps pause 1 time(s)" in note for note in pause["notes"]), pause


def test_evaluate_records_each_failure_and_goes_on(videos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\t{LABEL}\n" for p in videos.values()))
    out = tmp_path / "eval"
    proc = _run(
        ["evaluate", "--model", "motion_tiny", "--data", str(listing), "--out", str(out), "--views", "3x3"]
        + ["--workers", "1"]
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    by_video = {r["video"]: r for r in records}
    assert set(by_video) == {str(p) for p in videos.values()}
    readable = [n for n in videos if CASES[n][1] in ("ok", "warn")]
    for name, path in videos.items():
        rec = by_video[str(path)]
        if name in readable:
            assert rec["error"] is None and rec["top5"][0]["label"] == LABEL, (name, rec)
        else:
            assert str(path) in rec["error"], (name, rec)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failed"] == len(videos) - len(readable) == len(metrics["failures"])
    assert metrics["evaluated"] == len(readable) and metrics["video_top1"] == 1.0


def test_a_dropped_frame_keeps_the_timestamps(tmp_path):
    """Three frames missing (less than a quarter of a clip): the clips stay where the reference puts them."""
    from videozoo.engine import Engine

    frames = scene()
    times = [i / FPS for i in range(FRAMES) if i not in (20, 21, 22)]
    dropped = make_video(tmp_path / "dropped.mp4", frames=frames[: len(times)], timestamps=times)
    engine = Engine.build("motion_tiny", weights="default", views="3x1")
    with pytest.warns(UserWarning, match="3 frame"):
        got = engine.load(dropped)
    with av.open(str(dropped)) as c:
        stream = c.streams.video[0]
        duration = float(stream.duration * stream.time_base)
    assert got.notes == () and got.windows == engine.transform.windows(duration, video_fps=got.video_fps)


def test_cut_and_paused_files_warn_once_without_touching_the_warning_filters(tmp_path, monkeypatch):
    """The server decodes in several threads: the warning filters, process-wide, must stay as they are."""
    import warnings

    from videozoo.engine import Engine
    from videozoo.io import DamagedVideoWarning

    frames = scene()
    pause = make_video(tmp_path / "pause.mp4", frames=frames, timestamps=paused(FRAMES))
    cut = truncate(make_video(tmp_path / "cut.mkv", frames=frames, fps=FPS), keep=0.6)
    engine = Engine.build("motion_tiny", weights="default", views="3x1")

    def untouchable(*args, **kwargs):
        raise AssertionError("warnings.catch_warnings is not thread-safe")

    monkeypatch.setattr(warnings, "catch_warnings", untouchable)
    for path, note in ((pause, "its timestamps pause"), (cut, "before its declared duration")):
        with pytest.warns(DamagedVideoWarning) as said:
            warnings.simplefilter("always")
            loaded = engine.load(path, lazy=True)
        messages = [str(w.message) for w in said if issubclass(w.category, DamagedVideoWarning)]
        assert sum(note in m for m in messages) == 1, messages
        assert len(messages) == len(set(messages)), messages  # nothing said twice
        assert loaded.notes and loaded.lost_frames > 0
