"""Streams (standard input, URLs), ``Video.frames()``, and inputs that are not videos."""

import functools
import hashlib
import http.server
import json
import os
import pty
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings

import av
import numpy as np
import pytest
import torch

from videogen import iter_indices, make_frame_folder, make_video, read_index
from videozoo.io import DamagedVideoWarning, StreamVideo, VideoDecodeError, open_video

av.logging.set_level(None)

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, TESTS]), "OMP_NUM_THREADS": "1"}

# Writes a counter video with PyAV to standard output: argv = container, frames, rotate.
WRITER = """
import sys
from videogen import make_video
rotate = int(sys.argv[3]) or None
make_video("pipe:1", container=sys.argv[1], codec="h264", bframes=True, num_frames=int(sys.argv[2]), gop=15,
           rotate=rotate)
"""
# Reads standard input as a stream and prints one JSON line about it.
READER = """
import hashlib, json, sys
from videogen import read_index
from videozoo.io import VideoDecodeError, open_video
try:
    v = open_video("-")
except VideoDecodeError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
every = int(sys.argv[1])
out = {"seekable": v.seekable, "duration": v.duration, "num_frames": v.num_frames, "size": [v.width, v.height],
       "fps": v.fps, "backend": v.backend}
try:
    v.get_clips([(0.0, 1.0)])
except VideoDecodeError as e:
    out["get_clips_error"] = str(e)
frames = []
for f in v.frames(select=lambda i, t: i % every == 0):
    rgb = f.rgb()
    frames.append([f.index, f.pts_sec, read_index(rgb.numpy()), hashlib.sha256(rgb.numpy().tobytes()).hexdigest(),
                   list(rgb.shape)])
out["frames"] = frames
out["converted"] = v.stats.frames_converted
out["decoded"] = v.stats.frames_decoded
v.close()
print(json.dumps(out))
"""


def python(code, *args):
    return [sys.executable, "-c", code, *map(str, args)]


def digest(rgb):
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()


def file_frames(path):
    """(pts_sec, sha256) of every frame of a full decode of a file."""
    with open_video(path) as v, warnings.catch_warnings():
        # NUT files with B-frames declare a duration one frame longer than
        # their frames span, which reads as a truncated tail.
        warnings.simplefilter("ignore", DamagedVideoWarning)
        clip = v.decode_all()
    return [(float(t), digest(clip.frames[:, k].numpy())) for k, t in enumerate(clip.pts_sec)]


@pytest.mark.parametrize("fmt,rotate", [("mpegts", 0), ("matroska", 90), ("nut", 0)])
def test_stdin_stream_written_by_pyav(tmp_path, fmt, rotate):
    writer = subprocess.Popen(python(WRITER, fmt, 45, rotate), stdout=subprocess.PIPE, env=ENV)
    reader = subprocess.run(
        python(READER, 4), stdin=writer.stdout, capture_output=True, text=True, env=ENV, timeout=120
    )
    writer.stdout.close()
    assert writer.wait(timeout=60) == 0
    assert reader.returncode == 0, reader.stderr
    out = json.loads(reader.stdout.strip().splitlines()[-1])
    assert out["seekable"] is False and out["backend"] == "pyav"
    assert out["duration"] is None and out["num_frames"] is None
    assert out["fps"] == 30
    assert out["size"] == ([48, 64] if rotate else [64, 48])
    assert "cannot seek" in out["get_clips_error"] and "frames()" in out["get_clips_error"]
    frames = out["frames"]
    assert [f[0] for f in frames] == list(range(0, 45, 4))
    assert out["decoded"] == 45 and out["converted"] == len(frames)  # skipped frames were not converted
    np.testing.assert_allclose([f[1] for f in frames], np.arange(0, 45, 4) / 30, atol=1.1e-3)
    assert all(f[4] == ([3, 64, 48] if rotate else [3, 48, 64]) for f in frames)
    if not rotate:
        assert [f[2] for f in frames] == list(range(0, 45, 4))
    # The same bytes, written to a file, decode to exactly the same pictures.
    same = tmp_path / f"same.{fmt}"
    same.write_bytes(subprocess.run(python(WRITER, fmt, 45, rotate), capture_output=True, env=ENV, check=True).stdout)
    ref = file_frames(same)
    assert [f[3] for f in frames] == [ref[i][1] for i in range(0, 45, 4)]


def test_stdin_from_a_fifo(tmp_path):
    """A named pipe is read as a stream when it is redirected to standard input."""
    video = make_video(tmp_path / "v.ts", codec="h264", num_frames=30)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # The shell's redirection waits for the writer; the reader never sees the FIFO's path.
    reader = subprocess.Popen(
        f'"{sys.executable}" -c \'{READER}\' 1 < "{fifo}"',
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    with open(fifo, "wb") as f:
        f.write(video.read_bytes())
    stdout, stderr = reader.communicate(timeout=120)
    assert reader.returncode == 0, stderr
    out = json.loads(stdout.strip().splitlines()[-1])
    assert [f[2] for f in out["frames"]] == list(range(30))
    assert [f[3] for f in out["frames"]] == [d for _, d in file_frames(video)]


@pytest.mark.parametrize(
    "stdin,match",
    [
        ("devnull", "cannot read a video stream from standard input"),
        ("text", "cannot read a video stream from standard input"),
        ("tty", "standard input is a terminal"),
    ],
)
def test_stdin_that_holds_no_stream(tmp_path, stdin, match):
    if stdin == "tty":
        master, slave = pty.openpty()
        source = slave
    elif stdin == "text":
        p = tmp_path / "notes.txt"
        p.write_text("not a video\n" * 100)
        source = open(p, "rb")
    else:
        source = subprocess.DEVNULL
    try:
        r = subprocess.run(python(READER, 1), stdin=source, capture_output=True, text=True, env=ENV, timeout=60)
    finally:
        if stdin == "tty":
            os.close(master)
            os.close(slave)
        elif stdin == "text":
            source.close()
    assert r.returncode == 0, r.stderr
    err = json.loads(r.stdout.strip().splitlines()[-1])["error"]
    assert err.startswith("-: ") and match in err


# -- URLs ---------------------------------------------------------------------


@pytest.fixture
def http_root(tmp_path):
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_url_is_read_as_a_stream(http_root):
    root, base = http_root
    video = make_video(root / "v.ts", codec="h264", bframes=True, num_frames=40, gop=10)
    ref = file_frames(video)
    with open_video(f"{base}/v.ts") as v:
        assert isinstance(v, StreamVideo) and v.kind == "url" and not v.seekable
        assert (v.width, v.height) == (64, 48)
        got = [(f.pts_sec, digest(f.rgb().numpy())) for f in v.frames()]
        assert v.stats.seeks == 0
        with pytest.raises(VideoDecodeError, match="already read"):
            next(v.frames())
        for call in (lambda: v.get_clip(0.0, 1.0), v.decode_all):
            with pytest.raises(VideoDecodeError, match="cannot seek"):
                call()
    assert [d for _, d in got] == [d for _, d in ref]
    np.testing.assert_allclose([t for t, _ in got], [t for t, _ in ref], atol=1e-9)


def test_url_refused_connection_fails_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    t0 = time.monotonic()
    with pytest.raises(VideoDecodeError, match=rf"tcp://127.0.0.1:{port}: cannot open: .*refused"):
        open_video(f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - t0 < 5


def test_silent_url_times_out_instead_of_hanging():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection, never sends a byte
    try:
        t0 = time.monotonic()
        with pytest.raises(VideoDecodeError, match="cannot open"):
            open_video(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - t0 < 10
    finally:
        server.close()


# -- inputs that are not videos: refused at once, never waited on -------------


def finishes_within(seconds, fn):
    """fn()'s exception, or a failure when it is still running after ``seconds``."""
    box = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    return box.get("exc")


def _fifo(tmp_path):
    p = tmp_path / "named.pipe"
    os.mkfifo(p)
    return p


def _socket(tmp_path):
    p = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    return p


def _empty_dir(tmp_path):
    p = tmp_path / "nothing"
    p.mkdir()
    return p


def _cover_only(tmp_path):
    p = tmp_path / "album"
    make_frame_folder(p, num_frames=1, ext="png", template="cover")
    (p / "notes.txt").write_text("x")
    return p


def _camera_node(tmp_path):
    p = tmp_path / "video0"
    try:
        os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(81, 0))
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    return p


NOT_VIDEOS = {
    "fifo-path": (_fifo, "named pipe \\(FIFO\\).*pass '-'"),
    "dev-null": (lambda d: "/dev/null", "character device that is not a camera"),
    "dev-zero": (lambda d: "/dev/zero", "character device that is not a camera"),
    "unix-socket": (_socket, "is a socket"),
    "empty-dir": (_empty_dir, "no image frames"),
    "dir-without-numbered-images": (_cover_only, "no numbered image frames.*cover.png"),
    # A V4L2 device node with no camera behind it (or an FFmpeg without v4l2).
    "camera-node": (_camera_node, "v4l2|cannot open"),
}


@pytest.mark.parametrize("name", list(NOT_VIDEOS))
def test_not_a_video_fails_at_once(tmp_path, name):
    make, match = NOT_VIDEOS[name]
    path = make(tmp_path)
    exc = finishes_within(10, lambda: open_video(path))
    assert isinstance(exc, VideoDecodeError), exc
    assert str(exc).startswith(f"{path}: ")
    assert __import__("re").search(match, str(exc)), str(exc)


@pytest.mark.parametrize("cls", ["PyAVVideo", "TorchCodecVideo"])
def test_file_backends_refuse_streams_and_folders(tmp_path, cls):
    import videozoo.io as vio

    fifo = _fifo(tmp_path)
    exc = finishes_within(10, lambda: getattr(vio, cls)(fifo))
    assert isinstance(exc, VideoDecodeError) and "named pipe" in str(exc)
    exc = finishes_within(10, lambda: getattr(vio, cls)(tmp_path))
    assert isinstance(exc, VideoDecodeError) and "directory" in str(exc)


# -- frames() on files and folders --------------------------------------------


def test_frames_of_a_file_equal_a_full_decode(tmp_path):
    path = make_video(tmp_path / "v.mp4", codec="h264", bframes=True, num_frames=40, gop=10, rotate=90)
    with open_video(path) as v:
        full = v.decode_all()
        v.stats.reset()
        frames = list(v.frames())
        assert v.stats.frames_converted == 0  # nothing converted until asked
        rgb = torch.stack([f.rgb() for f in frames], dim=1)
        assert v.stats.frames_converted == 40
        assert frames[3].rgb() is frames[3].rgb()  # converted once
        assert v.stats.frames_converted == 40
    assert torch.equal(rgb, full.frames)
    assert [f.index for f in frames] == list(range(40))
    assert torch.equal(torch.tensor([f.pts_sec for f in frames], dtype=torch.float64), full.pts_sec)
    assert all(f.lost == [] for f in frames)


def test_frames_iteration_overtaken_by_another_read(tmp_path):
    path = make_video(tmp_path / "v.mp4", codec="h264", num_frames=40)
    with open_video(path) as v:
        it = v.frames()
        assert read_index(next(it).rgb().numpy()) == 0
        v.get_clip(0.5, 1.0)
        with pytest.raises(VideoDecodeError, match="read or closed meanwhile"):
            next(it)
        # A new iteration starts again from the first frame.
        assert [read_index(f.rgb().numpy()) for f in v.frames(select=lambda i, t: i < 3)] == [0, 1, 2]


def test_frames_select_must_be_callable(tmp_path):
    path = make_video(tmp_path / "v.mp4", codec="h264", num_frames=10)
    with open_video(path) as v:
        with pytest.raises(TypeError, match="select must be a function"):
            v.frames(select=3)


def test_frames_of_a_folder_report_numbering_gaps(tmp_path):
    folder = make_frame_folder(tmp_path / "f", num_frames=12, ext="png")
    (folder / "img_00005.png").unlink()
    (folder / "img_00006.png").unlink()
    with open_video(folder, fps=10) as v:
        with pytest.warns(DamagedVideoWarning, match="2 frame"):
            frames = list(v.frames())
    assert [read_index(f.rgb().numpy()) for f in frames] == [0, 1, 2, 3, 6, 7, 8, 9, 10, 11]
    np.testing.assert_allclose([f.pts_sec for f in frames], np.array([0, 1, 2, 3, 6, 7, 8, 9, 10, 11]) / 10)
    gap = frames[4].lost
    assert len(gap) == 1 and gap[0].count == 2 and not gap[0].kept
    assert "img_00005.png ... img_00006.png" in gap[0].reason
    assert gap[0].pts_sec == pytest.approx(0.4)
    assert all(f.lost == [] for k, f in enumerate(frames) if k != 4)


def test_clip_across_a_folder_gap(tmp_path):
    folder = make_frame_folder(tmp_path / "f", num_frames=20, ext="png")
    (folder / "img_00009.png").unlink()
    with open_video(folder, fps=10) as v:
        assert v.num_frames == 20 and v.duration == pytest.approx(2.0)
        with pytest.warns(DamagedVideoWarning):
            clip = v.get_clip(0.5, 1.2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            clean = v.get_clip(1.0, 1.5)  # after the gap: nothing to report
    assert list(iter_indices(clip.frames)) == [5, 6, 7, 9, 10, 11]
    assert [x.count for x in clip.lost] == [1] and clip.lost[0].pts_sec == pytest.approx(0.8)
    assert list(iter_indices(clean.frames)) == [10, 11, 12, 13, 14] and clean.lost == []
