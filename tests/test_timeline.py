"""The action timeline: window placement over a frame stream, smoothing and segments, the engine
path, the files, standard input, SIGTERM, bad inputs, and boundaries on a four-motion video."""

from __future__ import annotations

import contextlib
import csv
import functools
import http.server
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from videogen import make_video, truncate
from videozoo.cli.main import main
from videozoo.engine import Engine
from videozoo.io import Frame, open_video
from videozoo.jobs.timeline import (
    TimelineRun,
    WindowFiller,
    WindowPlan,
    find_segments,
    smooth_scores,
    timeline,
    timeline_stream,
)

av.logging.set_level(None)

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, TESTS]), "OMP_NUM_THREADS": "1"}
MODEL = ["--model", "x3d_xs", "--weights", "none"]
JSON_KEYS = ["video", "model", "fps", "duration", "window", "stride", "precision", "windows", "segments"]


# -- window placement over a stream of frames (no model) --------------------------------------------


def fake_frames(n, fps=30.0, t0=0.0):
    for i in range(n):
        yield Frame(i, t0 + i / fps, [], i, lambda p: torch.zeros(3, 2, 2, dtype=torch.uint8))


def fill(plan, n, fps=30.0, t0=0.0):
    f = WindowFiller(plan, fps=fps)
    out = []
    for fr in fake_frames(n, fps, t0):
        out += f.push(fr)
    return out + f.finish(), f


@pytest.mark.parametrize(
    "window, stride, frames, expect",
    [
        # 3 s at 30 fps: windows every 0.5 s while they fit, the last one ends at 3.0 exactly.
        (1.0, 0.5, 90, [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0)]),
        # 2.9 s: the 0.5-stride grid ends at 2.5; one more window is moved back to end at 2.9.
        (1.0, 0.5, 87, [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (1.9, 2.9)]),
        # stride longer than the window: gaps between windows are allowed.
        (0.5, 1.0, 60, [(0.0, 0.5), (1.0, 1.5), (1.5, 2.0)]),
        # shorter than one window: one window over everything, marked short.
        (2.0, 1.0, 30, [(0.0, 1.0)]),
    ],
)
def test_window_placement(window, stride, frames, expect):
    wins, _ = fill(WindowPlan(window, stride), frames)
    got = [(round(w.start, 6), round(w.end, 6)) for w in wins]
    assert got == [(pytest.approx(a), pytest.approx(b)) for a, b in expect]
    for w in wins:
        idx = [f.index for f in w.clips[0]]
        assert idx == list(range(w.start_frame, w.end_frame))  # one clip: exactly the window's frames
        assert all(w.start - 1e-6 <= f.pts_sec < w.end - 1e-6 for f in w.clips[0])
    assert [w.short for w in wins] == [frames / 30.0 < window] * len(wins)


def test_window_clips_spread_over_the_stride():
    # 3 clips per window: centres at -1/3, 0, +1/3 of the stride around the window's centre.
    wins, _ = fill(WindowPlan(1.0, 0.6, clips=3), 150)
    w = wins[3]
    centres = [(c[0].pts_sec + c[-1].pts_sec + 1 / 30) / 2 for c in w.clips]
    assert centres == pytest.approx([w.center - 0.2, w.center, w.center + 0.2], abs=1 / 30)
    assert all(len(c) == 30 for c in w.clips)
    # At the ends the clips stay inside the stream.
    assert wins[0].clips[0][0].index == 0 and wins[-1].clips[-1][-1].index == 149


def test_frames_held_do_not_grow_with_length():
    plan = WindowPlan(2.0, 1.0)
    _, short = fill(plan, 300)
    _, long = fill(plan, 30000)
    assert long.peak_held == short.peak_held
    assert long.peak_held <= 30 * (plan.window + plan.stride + plan.span) + 2


@pytest.mark.parametrize("window, stride", [(0, 1), (-1, 1), (1, 0), (1, -0.5), (math.inf, 1), (math.nan, 1)])
def test_window_plan_rejects(window, stride):
    with pytest.raises(ValueError, match="must be a positive number of seconds"):
        WindowPlan(window, stride)


# -- smoothing and segments ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_smoothing_is_centred(n):
    s = np.zeros((21, 2))
    s[:, 1] = 1
    s[10] = [1, 0]
    out = smooth_scores(s, n)
    assert out.sum(1) == pytest.approx(np.ones(21))
    col = out[:, 0]
    assert col == pytest.approx(col[::-1])  # symmetric around the impulse: nothing shifts in time
    assert col[10] == col.max() and col[10] > 0


def mixed_scores(bounds, labels, k, t_end, window, stride):
    """Windows whose scores mix the labels in proportion to what each window holds (plus noise)."""
    starts = np.arange(0, t_end - window + 1e-9, stride)
    rng = np.random.default_rng(0)
    rows, centres = [], []
    edges = [0.0, *bounds, t_end]
    for s in starts:
        p = np.full(k, 0.02)
        for lab, a, b in zip(labels, edges, edges[1:], strict=False):
            p[lab] += max(0.0, min(b, s + window) - max(a, s)) / window
        p += rng.uniform(0, 0.05, k)
        rows.append(p / p.sum())
        centres.append(s + window / 2)
    return np.array(centres), np.array(rows)


@pytest.mark.parametrize("smooth", [1, 3, 5])
def test_segment_boundaries_are_accurate(smooth):
    bounds = [4.3, 8.1, 12.7]
    centres, scores = mixed_scores(bounds, [2, 5, 0, 7], 8, 16.0, 1.07, 0.53)
    segs = find_segments(
        centres,
        smooth_scores(scores, smooth),
        start=0.0,
        end=16.0,
        min_segment=1.07,
        class_names=[f"c{i}" for i in range(8)],
        frame_at=lambda t: math.ceil(t * 15),
    )
    assert [s.index for s in segs] == [2, 5, 0, 7]
    assert [s.start for s in segs[1:]] == pytest.approx(bounds, abs=0.25)
    assert segs[0].start == 0.0 and segs[-1].end == 16.0
    assert all(a.end == b.start for a, b in zip(segs, segs[1:], strict=False))
    assert [s.start_frame for s in segs[1:]] == [math.ceil(s.start * 15) for s in segs[1:]]


@pytest.mark.parametrize(
    "labels, min_segment, expect",
    [
        ([0] * 6 + [1] + [0] * 6, 1.0, [0]),  # one odd window between two runs of one label: fused
        ([0] * 6 + [1] + [2] * 6, 1.0, [0, 2]),  # between two labels: split between them
        ([1] + [0] * 8, 1.0, [0]),  # at the start: joins its only neighbour
        ([0] * 6 + [1] + [2] * 6, 0.0, [0, 1, 2]),  # min_segment 0 keeps every run
        ([3] * 4, 10.0, [3]),  # a single run is kept even when shorter than min_segment
    ],
)
def test_short_runs_are_absorbed(labels, min_segment, expect):
    p = np.full((len(labels), 4), 0.1)
    for i, lab in enumerate(labels):
        p[i, lab] = 0.7
    centres = 0.25 + 0.5 * np.arange(len(labels))
    segs = find_segments(
        centres,
        p,
        start=0.0,
        end=0.5 * len(labels),
        min_segment=min_segment,
        class_names=list("abcd"),
        frame_at=lambda t: int(t * 10),
    )
    assert [s.index for s in segs] == expect
    assert segs[0].start == 0.0 and segs[-1].end == 0.5 * len(labels)


# -- through the engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    return Engine.build("x3d_xs", weights=None, precision="fp32", batch_size=4)


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    # 5 s at 30 fps, 64x48.
    return make_video(tmp_path_factory.mktemp("tl") / "v.mp4", num_frames=150, fps=30, width=64, height=48)


def test_windows_are_scored_as_the_engine_scores_a_clip(engine, clip_video):
    calls = []
    forward = engine.forward
    engine.forward = lambda views, output="scores": calls.append(len(views)) or forward(views, output)
    try:
        run = TimelineRun(clip_video, engine=engine, window=1.5, stride=0.75)
        wins = list(run)
    finally:
        del engine.forward
    assert [(w.start, w.end) for w in wins] == [
        (0.0, 1.5),
        (0.75, 2.25),
        (1.5, 3.0),
        (2.25, 3.75),
        (3.0, 4.5),
        (3.5, 5.0),
    ]
    assert max(calls) > 1 and sum(calls) == len(wins)  # several windows per forward pass
    # One sequential pass, no seeking, only the kept frames converted to RGB.
    stats = run._video.stats
    assert stats.seeks == 0 and stats.passes == 0
    assert stats.frames_converted <= len(wins) * engine.input.num_frames < 150
    # Each window's scores: what the engine gives for that window's clip decoded on its own.
    t = engine.transform
    with open_video(clip_video) as v:
        clips = v.get_clips(
            [(w.start, w.end) for w in wins], select=lambda _i, pts: t.select_frames(len(pts), pts, v.fps)
        )
    for w, c in zip(wins, clips, strict=False):
        expect = engine.forward(t(c, video_fps=30.0, presampled=True)).mean(0)
        assert torch.from_numpy(w.scores) == pytest.approx(expect, abs=1e-5)
        assert w.top_k[0].index == int(expect.argmax())


def test_timeline_stream_yields_before_the_end(engine, clip_video):
    run = timeline_stream(clip_video, model=engine, window=1.0, stride=0.5, max_latency=0.0)
    first = next(run)
    assert first.start == 0.0 and run.frames < 60  # the first window came out long before the end
    rest = list(run)
    assert len(rest) == 8
    res = run.result(smooth=1, min_segment=0)
    assert len(res.windows) == 9 and res.duration == pytest.approx(5.0)


def test_timeline_files(tmp_path, clip_video):
    out = tmp_path / "out"
    import videozoo

    result = videozoo.timeline(
        clip_video, model="x3d_xs", weights=None, top_k=3, out=out, overlay=True, precision="fp32"
    )
    data = json.loads((out / "timeline.json").read_text())
    assert list(data) == JSON_KEYS
    assert data["window"] == pytest.approx(4 * 12 / 30) and data["stride"] == pytest.approx(0.8)
    assert data["fps"] == 30.0 and data["duration"] == pytest.approx(5.0) and data["precision"] == "fp32"
    assert data == json.loads(json.dumps(result.to_json()))
    for w in data["windows"]:
        assert list(w) == ["start", "end", "start_frame", "end_frame", "top_k"]
        assert len(w["top_k"]) == 3 and list(w["top_k"][0]) == ["label", "index", "probability"]
        assert w["start_frame"] == round(w["start"] * 30) and w["end_frame"] == round(w["end"] * 30)
    for s in data["segments"]:
        assert list(s) == ["label", "start", "end", "start_frame", "end_frame", "score"]
    assert data["segments"][0]["start"] == 0.0 and data["segments"][-1]["end"] == pytest.approx(5.0)
    assert data["segments"][-1]["end_frame"] == 150
    rows = list(csv.DictReader((out / "timeline.csv").open()))
    assert len(rows) == len(data["windows"]) and rows[0]["label_1"] == data["windows"][0]["top_k"][0]["label"]
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(str(out / "overlay.mp4")) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        assert n == 150 and s.average_rate == 30


def test_frame_folder(engine, tmp_path):
    from videogen import make_frame_folder

    folder = make_frame_folder(tmp_path / "frames", num_frames=45)  # read at the model's 30 fps
    run = TimelineRun(folder, engine=engine, window=0.5, stride=0.5)
    wins = list(run)
    assert [(w.start_frame, w.end_frame) for w in wins] == [(0, 15), (15, 30), (30, 45)]
    assert run.result().duration == pytest.approx(1.5)


def test_views_average_clips_and_crops(clip_video):
    # 2 clips x 3 crops per window; window 0's clip centres lie a quarter stride either side of its
    # centre (the first one moved forward to start at 0).
    e = Engine.build("x3d_xs", weights=None, views="2x3", precision="fp32")
    wins = list(TimelineRun(clip_video, engine=e, window=2.5, stride=2.5))
    assert [(w.start, w.end) for w in wins] == [(0.0, 2.5), (2.5, 5.0)]
    t = e.transform
    with open_video(clip_video) as v:
        clips = v.get_clips([(0.0, 2.5), (0.625, 3.125)], select=lambda _i, pts: t.select_frames(len(pts), pts, 30.0))
    views = torch.cat([t(c, video_fps=30.0, presampled=True) for c in clips])  # (6, C, T, H, W)
    assert len(views) == 6
    assert torch.from_numpy(wins[0].scores) == pytest.approx(e.forward(views).mean(0), abs=1e-5)


# -- the command: standard input, signals, bad input --------------------------------------------------


@pytest.fixture(scope="module")
def ts_video(tmp_path_factory):
    return make_video(
        tmp_path_factory.mktemp("ts") / "v.ts",
        container="mpegts",
        num_frames=120,
        fps=30,
        width=64,
        height=48,
        bframes=True,
    )


@contextlib.contextmanager
def stdin_from(data: bytes, tmp_path):
    """File descriptor 0 reads ``data`` (FFmpeg's pipe:0 reads the descriptor itself)."""
    src = tmp_path / "stdin.bin"
    src.write_bytes(data)
    saved = os.dup(0)
    try:
        with open(src, "rb") as f:
            os.dup2(f.fileno(), 0)
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_stdin_prints_one_json_line_per_window(tmp_path, ts_video, capsys):
    out = tmp_path / "out"
    with stdin_from(Path(ts_video).read_bytes(), tmp_path):
        rc = main(["timeline", "-", *MODEL, "--out", str(out), "--top-k", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = [json.loads(x) for x in captured.out.splitlines()]
    data = json.loads((out / "timeline.json").read_text())
    assert lines == data["windows"] and len(lines) == 4
    assert data["video"] == "-" and data["duration"] == pytest.approx(4.0)


WRITER = """
import sys, time
data = open(sys.argv[1], 'rb').read()
for i in range(0, len(data), 2048):
    sys.stdout.buffer.write(data[i:i + 2048]); sys.stdout.buffer.flush(); time.sleep(0.02)
"""


def test_sigterm_writes_what_was_computed(tmp_path):
    src = make_video(tmp_path / "long.ts", container="mpegts", num_frames=1800, fps=30, width=64, height=48)
    out = tmp_path / "out"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src)], stdout=subprocess.PIPE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "videozoo", "timeline", "-", *MODEL, "--out", str(out)],
        stdin=writer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    writer.stdout.close()
    # Every printed line is read through one reader: lines the pipe already holds when the signal
    # goes out stay in its buffer (Popen.communicate would read past them from the raw pipe).
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    try:
        printed = [json.loads(lines.get(timeout=120)) for _ in range(3)]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        proc.kill()
        writer.kill()
        writer.wait()
    reader.join(timeout=10)
    while not lines.empty():
        printed.append(json.loads(lines.get()))
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err
    data = json.loads((out / "timeline.json").read_text())
    assert data["windows"] == printed and len(data["windows"]) >= 3
    assert data["duration"] < 60 and data["segments"] and (out / "timeline.png").exists()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_url_is_read_as_a_live_stream(tmp_path, ts_video, capsys):
    root = Path(ts_video).parent
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{Path(ts_video).name}"
        rc = main(["timeline", url, *MODEL, "--out", str(tmp_path / "out")])
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    data = json.loads((tmp_path / "out" / "timeline.json").read_text())
    assert lines == data["windows"] and len(lines) == 4 and data["video"] == url


def _garbage(tmp_path):
    p = tmp_path / "garbage.mp4"
    p.write_bytes(os.urandom(4096))
    return p


def _truncated(tmp_path):
    p = make_video(tmp_path / "cut.mkv", num_frames=300, fps=30, width=64, height=48)
    return truncate(p, keep=0.4)


def _short(tmp_path):
    return make_video(tmp_path / "short.mp4", num_frames=20, fps=30, width=64, height=48)


def _ok(tmp_path):
    return make_video(tmp_path / "ok.mp4", num_frames=90, fps=30, width=64, height=48)


@pytest.mark.parametrize(
    "make, extra, stdin, code, message, windows",
    [
        (lambda d: d / "missing.mp4", [], None, 1, "missing.mp4: file not found", None),
        (_garbage, [], None, 1, "garbage.mp4: ", None),
        (lambda d: "-", [], b"", 1, "-: ", None),  # an empty stream
        (_truncated, [], None, 1, "before its declared duration", "some"),  # stops mid-way: files kept
        (_short, [], None, 0, "shorter than one window", 1),  # scored once, padded
        (_ok, ["--window", "10"], None, 0, "shorter than one window", 1),  # window longer than the video
        (_ok, ["--stride", "0"], None, 2, "--stride: must be a positive number", None),
        (_ok, ["--stride", "-1"], None, 2, "--stride: must be a positive number", None),
        (_ok, ["--window", "0"], None, 2, "--window: must be a positive number", None),
        (_ok, ["--top-k", "0"], None, 2, "--top-k: must be at least 1", None),
        (_ok, ["--smooth", "0"], None, 2, "--smooth: must be at least 1", None),
        (_ok, ["--min-segment", "-1"], None, 2, "--min-segment: must be zero or", None),
        (lambda d: "-", ["--overlay"], b"x", 2, "--overlay needs a file", None),
        (_ok, ["--out", "__file__"], None, 2, "exists and is not a folder", None),
    ],
)
def test_bad_input(tmp_path, capsys, make, extra, stdin, code, message, windows):
    video = str(make(tmp_path))
    out = tmp_path / "out"
    if "__file__" in extra:
        (tmp_path / "afile").write_text("x")
        extra = ["--out", str(tmp_path / "afile")]
    else:
        extra = ["--out", str(out), *extra]
    with stdin_from(stdin, tmp_path) if stdin is not None else contextlib.nullcontext():
        try:
            rc = main(["timeline", video, *MODEL, *extra])
        except SystemExit as e:  # argparse's usage errors
            rc = e.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert message in err
    assert len([ln for ln in err.splitlines() if ": error:" in ln]) <= 1  # one clear message
    if windows is None:
        assert not (out / "timeline.json").exists()
    else:
        data = json.loads((out / "timeline.json").read_text())
        assert len(data["windows"]) == windows if windows != "some" else data["windows"]


def test_stream_that_stops_mid_way_ends_the_timeline(tmp_path, ts_video, capsys):
    # A stream has no declared end: a cut one ends where its bytes end (a partly received packet at
    # worst shows as a damaged-frame warning).
    cut = tmp_path / "cut.ts"
    data = Path(ts_video).read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 77])
    with stdin_from(cut.read_bytes(), tmp_path):
        rc = main(["timeline", "-", *MODEL, "--out", str(tmp_path / "out")])
    assert rc == 0
    result = json.loads((tmp_path / "out" / "timeline.json").read_text())
    assert 1.0 < result["duration"] < 3.0 and result["windows"]


# -- boundaries on four motions back to back ---------------------------------------------------------


def four_motions(path, classes, seconds=4.0, fps=15, size=112, seed=0):
    """The scenes of ``classes`` back to back, each ``seconds`` long (the wide variety, which
    motion_tiny was trained on)."""
    from videozoo.data.synth import render_sequence, write_video

    frames, _ = render_sequence(classes, seconds=seconds, fps=fps, size=(size, size), seed=seed)
    return write_video(path, frames, fps=fps)


def motion_tiny_available():
    from videozoo.models.registry import list_models

    return "motion_tiny" in list_models()


@pytest.mark.skipif(not motion_tiny_available(), reason="the embedded motion_tiny model is not registered in this tree")
def test_boundaries_on_four_motions(tmp_path):
    classes = ["move_left", "zoom_in", "rotate_cw", "move_down"]
    video = four_motions(tmp_path / "four.mp4", classes)
    result = timeline(video, model="motion_tiny", weights="default", precision="fp32")
    assert [s.label for s in result.segments] == classes
    assert [s.start for s in result.segments[1:]] == pytest.approx([4.0, 8.0, 12.0], abs=1.0)
    assert result.segments[-1].end == pytest.approx(16.0)
