import math
import tracemalloc
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from videogen import (
    corrupt_bytes,
    iter_indices,
    make_audio_only,
    make_frame_folder,
    make_video,
    read_index,
    truncate,
    vfr_timestamps,
)
from videozoo.io import DamagedVideoWarning, VideoDecodeError, open_video

av.logging.set_level(None)  # damaged-file tests make FFmpeg chatty


def reference_decode(path):
    """Plain PyAV decode of every frame: (T, H, W, 3) uint8 and seconds."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = s.start_time or 0
        frames, pts = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            pts.append(float((f.pts - start) * s.time_base))
    return np.stack(frames), np.array(pts)


def expected_clip(ref, start, end):
    frames, pts = ref
    m = (pts >= start) & (pts < end)
    return torch.from_numpy(frames[m]).permute(3, 0, 1, 2), pts[m]


def assert_clip_exact(clip, ref, start, end):
    frames, pts = expected_clip(ref, start, end)
    assert clip.frames.dtype == torch.uint8
    assert clip.frames.shape == frames.shape
    assert torch.equal(clip.frames, frames)
    assert clip.pts_sec.dtype == torch.float64
    np.testing.assert_array_equal(clip.pts_sec.numpy(), pts)
    assert clip.lost == []


CASES = {
    "h264-mp4": dict(codec="h264", fps=30),
    "h264-bframes-mp4": dict(codec="h264", bframes=True, fps=30),
    "h264-bframes-mkv-ntsc": dict(codec="h264", bframes=True, fps="30000/1001"),
    "mpeg4-avi": dict(codec="mpeg4", fps=25),
    "mpeg4-bframes-mkv": dict(codec="mpeg4", bframes=True, fps=30),
    "vp9-webm": dict(codec="vp9", fps=30),
    "h264-bframes-ts": dict(codec="h264", bframes=True, fps=30),
    "mpeg4-bframes-ts": dict(codec="mpeg4", bframes=True, fps=30),  # no seek index
}
EXT = {
    "h264-mp4": "mp4",
    "h264-bframes-mp4": "mp4",
    "h264-bframes-mkv-ntsc": "mkv",
    "mpeg4-avi": "avi",
    "mpeg4-bframes-mkv": "mkv",
    "vp9-webm": "webm",
    "h264-bframes-ts": "ts",
    "mpeg4-bframes-ts": "ts",
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {name: make_video(root / f"{name}.{EXT[name]}", num_frames=75, gop=12, **kw) for name, kw in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_full_decode_frames_and_timestamps(videos, name):
    path = videos[name]
    with open_video(path) as v:
        fps = float(v.fps)
        clip = v.decode_all()
    assert clip.frames.shape == (3, 75, 48, 64)
    assert list(iter_indices(clip.frames)) == list(range(75))
    # The first frame is at ~0 (AVI with B-frames may start one frame late).
    assert 0 <= clip.pts_sec[0].item() <= 1.01 / fps
    steps = torch.diff(clip.pts_sec)
    assert torch.all(steps > 0)
    assert torch.allclose(steps, torch.full_like(steps, 1 / fps), atol=1.1e-3)
    ref = reference_decode(path)
    assert torch.equal(clip.frames, torch.from_numpy(ref[0]).permute(3, 0, 1, 2))


@pytest.mark.parametrize("name", list(CASES))
def test_get_clip_matches_full_decode(videos, name):
    path = videos[name]
    ref = reference_decode(path)
    pts = ref[1]
    windows = [
        (0.0, 0.5),
        (0.37, 1.21),  # starts between keyframes
        (float(pts[30]), float(pts[30]) + 0.4),  # starts exactly on a frame
        (float(pts[24]), float(pts[36])),  # keyframe-aligned start, exclusive end
        (2.0, 10.0),  # runs past the end
        (-1.0, 0.2),  # starts before the video
    ] + [(0.09 + 0.29 * k, 0.5 + 0.29 * k) for k in range(8)]
    with open_video(path) as v:
        assert v.width == 64 and v.height == 48
        assert v.duration == pytest.approx(75 / float(v.fps), abs=0.05)
        for s, e in reversed(windows):  # backward seeks too
            clip = v.get_clip(s, e)
            assert_clip_exact(clip, ref, s, e)
        clips = v.get_clips(windows)
        for (s, e), clip in zip(windows, clips, strict=True):
            assert_clip_exact(clip, ref, s, e)


def test_clip_content_is_the_right_frames(videos):
    with open_video(videos["h264-bframes-mp4"]) as v:
        clip = v.get_clip(1.0, 1.5)
    assert list(iter_indices(clip.frames)) == list(range(30, 45))
    np.testing.assert_allclose(clip.pts_sec.numpy(), np.arange(30, 45) / 30, atol=1e-9)


@pytest.fixture(scope="module")
def three_sec(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v3") / "v.mp4", codec="h264", bframes=True, num_frames=90, gop=15)


def ten_crop_windows(duration, clip_len, n=10):
    starts = np.linspace(0, duration - clip_len, n)
    return [(float(s), float(s) + clip_len) for s in starts]


def test_get_clips_is_one_pass(three_sec):
    windows = ten_crop_windows(3.0, 1.0)
    with open_video(three_sec) as v:
        clips = v.get_clips(windows)
        one_pass = v.stats.frames_decoded
        assert v.stats.passes == 1
        assert v.stats.seeks <= 1
        # About one decode of the file (plus at most a GOP before the start).
        assert one_pass <= 90 + 15
        # Each frame converted once although windows overlap.
        assert v.stats.frames_converted == 90
        assert v.stats.peak_frames_held <= 90
        v.stats.reset()
        singles = [v.get_clip(s, e) for s, e in windows]
        separate = v.stats.frames_decoded
    assert separate >= 3 * one_pass  # the per-window way really costs more
    for a, b in zip(clips, singles, strict=True):
        assert torch.equal(a.frames, b.frames)
        assert torch.equal(a.pts_sec, b.pts_sec)
    assert [c.num_frames for c in clips] == [30] * 10


def test_get_clips_keeps_input_order_and_duplicates(three_sec):
    windows = [(2.0, 2.5), (0.0, 0.5), (2.0, 2.5), (1.0, 1.2)]
    with open_video(three_sec) as v:
        clips = v.get_clips(windows)
    assert [next(iter_indices(c.frames)) for c in clips] == [60, 0, 60, 30]
    assert torch.equal(clips[0].frames, clips[2].frames)
    clips[0].frames.zero_()  # clips do not alias each other
    assert clips[2].frames.max() > 0


def test_get_clips_seeks_across_large_gaps(tmp_path):
    path = make_video(tmp_path / "long.mp4", codec="h264", num_frames=600, gop=30)  # 20 s
    ref = reference_decode(path)
    windows = [(0.5, 1.0), (18.0, 18.5)]
    with open_video(path) as v:
        clips = v.get_clips(windows)
        assert v.stats.passes == 2
        assert v.stats.frames_decoded < 150  # the 17 s between were skipped
    for (s, e), c in zip(windows, clips, strict=True):
        assert_clip_exact(c, ref, s, e)


def test_memory_bounded_by_clip_not_file(tmp_path):
    short = make_video(tmp_path / "short.mp4", codec="h264", num_frames=90, width=128, height=96, gop=30)
    long = make_video(tmp_path / "long.mp4", codec="h264", num_frames=1800, width=128, height=96, gop=30)  # 60 s

    def measure(path, start):
        with open_video(path) as v:
            tracemalloc.start()
            try:
                clip = v.get_clip(start, start + 2.0)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return clip, peak, v.stats.frames_decoded, v.stats.peak_frames_held

    # Both windows start 15 frames after a keyframe.
    c_short, peak_short, dec_short, held_short = measure(short, 0.5)
    c_long, peak_long, dec_long, held_long = measure(long, 40.5)
    assert list(iter_indices(c_short.frames)) == list(range(15, 75))
    assert list(iter_indices(c_long.frames)) == list(range(1215, 1275))
    assert held_short == held_long == 60
    # From the keyframe 15 frames before the window, then 60 (+1 to see
    # the end): independent of the file length.
    assert dec_short == 15 + 60 + 1
    assert dec_long <= dec_short + 1
    # The whole long video in RGB would be 1800 * 128 * 96 * 3 = 66 MB; the
    # clip and the frames buffered for it are 120 frames.
    frame_bytes = 128 * 96 * 3
    assert peak_long < 150 * frame_bytes
    assert peak_long < 1.5 * peak_short + 10 * frame_bytes


def test_threads_setting(three_sec):
    ref = reference_decode(three_sec)
    for threads in (1, 2, None):
        with open_video(three_sec, threads=threads) as v:
            cc = v._stream.codec_context
            assert cc.thread_count == (0 if threads is None else threads)
            assert_clip_exact(v.get_clip(0.4, 2.2), ref, 0.4, 2.2)


@pytest.mark.parametrize("rotate,k", [(90, 1), (180, 2), (-90, 3), (270, 3)])
def test_rotation_metadata_applied(tmp_path, rotate, k):
    plain = make_video(tmp_path / "plain.mp4", codec="h264", num_frames=20)
    rotated = make_video(tmp_path / "rot.mp4", codec="h264", num_frames=20, rotate=rotate)
    with open_video(plain) as v:
        upright = v.get_clip(0.1, 0.5)
    with open_video(rotated) as v:
        if k % 2:
            assert (v.width, v.height) == (48, 64)
        clip = v.get_clip(0.1, 0.5)
    assert torch.equal(clip.frames, torch.rot90(upright.frames, k, dims=(2, 3)))
    assert clip.frames.is_contiguous()
    # Undo the display rotation (clockwise) and the counter reads back.
    back = torch.rot90(clip.frames, -k, dims=(2, 3))
    assert list(iter_indices(back)) == list(range(3, 15))


@pytest.mark.parametrize("codec,ext", [("mpeg4", "mkv"), ("ffv1", "mkv")])
def test_odd_frame_size(tmp_path, codec, ext):
    path = make_video(tmp_path / f"odd.{ext}", codec=codec, width=63, height=47, num_frames=30)
    ref = reference_decode(path)
    with open_video(path) as v:
        assert (v.width, v.height) == (63, 47)
        clip = v.get_clip(0.2, 0.7)
    assert clip.frames.shape == (3, 15, 47, 63)
    assert_clip_exact(clip, ref, 0.2, 0.7)
    assert list(iter_indices(clip.frames)) == list(range(6, 21))


@pytest.mark.parametrize("ext,codec", [("mkv", "h264"), ("mp4", "h264"), ("webm", "vp9")])
def test_variable_frame_rate_uses_stream_timestamps(tmp_path, ext, codec):
    ts = vfr_timestamps(50, seed=3)
    path = make_video(tmp_path / f"vfr.{ext}", codec=codec, timestamps=ts, bframes=codec == "h264")
    with open_video(path) as v:
        full = v.decode_all()
        np.testing.assert_allclose(full.pts_sec.numpy(), ts, atol=1e-3)
        s, e = ts[10] - 1e-3, ts[31] - 1e-3
        clip = v.get_clip(s, e)
    assert list(iter_indices(clip.frames)) == list(range(10, 31))


def test_frame_folder(tmp_path):
    folder = make_frame_folder(tmp_path / "frames", num_frames=20, ext="png")
    with open_video(folder, fps=10) as v:
        assert v.duration == pytest.approx(2.0)
        assert (v.width, v.height) == (64, 48)
        clip = v.get_clip(0.5, 1.2)
        full = v.decode_all()
    assert list(iter_indices(clip.frames)) == [5, 6, 7, 8, 9, 10, 11]
    np.testing.assert_allclose(clip.pts_sec.numpy(), np.arange(5, 12) / 10)
    # PNG is lossless: the pictures are exactly what was written.
    from videogen import counter_frame

    assert torch.equal(full.frames[:, 7], torch.from_numpy(counter_frame(7, 64, 48)).permute(2, 0, 1))


def test_frame_folder_jpeg_default_fps(tmp_path):
    folder = make_frame_folder(tmp_path / "frames", num_frames=45, ext="jpg")
    with open_video(folder) as v:
        assert v.fps == 30
        assert v.duration == pytest.approx(1.5)
        clips = v.get_clips([(0.0, 0.5), (1.0, 1.5)])
    assert list(iter_indices(clips[1].frames)) == list(range(30, 45))


# -- bad input ---------------------------------------------------------------


def _raises(path, match, **kw):
    with pytest.raises(VideoDecodeError, match=match) as info:
        with open_video(path, **kw) as v:
            v.get_clip(0.0, 1.0)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert str(path) in str(err)
    return err


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.mp4", "not found")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    _raises(p, "empty")


@pytest.mark.parametrize("name", ["notes.txt", "notes.mp4"])
def test_text_file(tmp_path, name):
    p = tmp_path / name
    p.write_text("just some text, not a video\n" * 50)
    _raises(p, "not a video|cannot open")


def test_truncated_mp4(tmp_path):
    p = truncate(make_video(tmp_path / "t.mp4", codec="h264", num_frames=60), keep=0.5)
    _raises(p, "cannot open")


def test_truncated_mkv_reports_missing_tail(tmp_path):
    p = truncate(make_video(tmp_path / "t.mkv", codec="h264", num_frames=60), keep=0.5)
    with open_video(p) as v:
        with pytest.raises(VideoDecodeError, match="no frame decoded"):
            v.get_clip(1.7, 2.0)
        with pytest.warns(DamagedVideoWarning, match="t.mkv"):
            clip = v.get_clip(0.5, 2.0)
    assert 0 < clip.num_frames < 45
    assert any("truncated" in x.reason for x in clip.lost)


@pytest.mark.parametrize("name", ["audio.mp4", "audio.mka"])
def test_no_video_stream(tmp_path, name):
    p = make_audio_only(tmp_path / name)
    _raises(p, "no video stream")


def test_undecodable_stream(tmp_path):
    # A well-formed container whose video packets are random bytes.
    p = tmp_path / "garbage.mkv"
    rng = np.random.default_rng(0)
    out = av.open(str(p), "w")
    s = out.add_stream("mpeg4", rate=30)
    s.width, s.height = 64, 48
    for i in range(30):
        pkt = av.Packet(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        pkt.stream = s
        pkt.pts = pkt.dts = i
        pkt.time_base = Fraction(1, 30)
        pkt.is_keyframe = i == 0
        out.mux(pkt)
    out.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedVideoWarning)
        _raises(p, "no frame")


@pytest.mark.parametrize(
    "window,match",
    [
        ((2.0, 3.0), "after the end"),
        ((5.0, 6.0), "after the end"),
        ((-1.0, 0.0), "before the video"),
        ((1.0, 1.0), "empty"),
        ((1.0, 0.5), "empty"),
        ((float("nan"), 1.0), "empty"),
    ],
)
def test_window_outside_video(tmp_path, window, match):
    p = make_video(tmp_path / "v.mp4", codec="h264", num_frames=60)
    with open_video(p) as v:
        with pytest.raises(VideoDecodeError, match=match) as info:
            v.get_clip(*window)
        assert "v.mp4" in str(info.value)
        with pytest.raises(VideoDecodeError):
            v.get_clips([(0.0, 0.5), window])
        assert v.stats.frames_decoded == 0  # validated before decoding


@pytest.mark.parametrize("codec,ext", [("h264", "mp4"), ("mpeg4", "avi")])
def test_damaged_frames_in_the_middle(tmp_path, codec, ext):
    n = 150
    p = make_video(tmp_path / f"d.{ext}", codec=codec, num_frames=n, gop=30, pattern="noise")
    corrupt_bytes(p, at=0.5, length=3000, seed=1)
    with open_video(p) as v:
        with pytest.warns(DamagedVideoWarning, match=f"d.{ext}"):
            clip = v.get_clip(0.0, 5.0)
        assert v.stats.frames_decoded > 0
    assert clip.lost, "damage must be reported"
    for x in clip.lost:
        assert x.reason and x.count >= 1
        assert x.pts_sec is None or 0 <= x.pts_sec < 5.0
    assert clip.num_frames >= n // 2  # the undamaged frames are returned
    missing = n - clip.num_frames
    kept_damaged = sum(x.count for x in clip.lost if x.kept)
    assert missing + kept_damaged > 0
    # Frames before the damage are untouched.
    ref_clean = make_video(tmp_path / f"c.{ext}", codec=codec, num_frames=n, gop=30, pattern="noise")
    with open_video(ref_clean) as v:
        clean = v.get_clip(0.0, 1.0)
    assert torch.equal(clip.frames[:, : clean.num_frames], clean.frames)


def test_lost_cluster_detected_as_gap(tmp_path):
    p = make_video(tmp_path / "g.mkv", codec="h264", num_frames=90, gop=15)
    corrupt_bytes(p, at=0.5, length=300, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_video(p) as v:
            clip = v.get_clip(0.0, 3.0)
    idx = list(iter_indices(clip.frames))
    missing = sorted(set(range(90)) - set(idx))
    assert missing
    reported = sum(x.count for x in clip.lost if not x.kept)
    assert reported >= len(missing) - 2
    assert any(issubclass(w.category, DamagedVideoWarning) and "g.mkv" in str(w.message) for w in caught)


def test_closed_video_raises(three_sec):
    v = open_video(three_sec)
    v.close()
    with pytest.raises(VideoDecodeError, match="closed"):
        v.get_clip(0, 1)


def test_backend_selection(three_sec):
    try:
        import torchcodec  # noqa: F401

        has_tc = True
    except Exception:
        has_tc = False
    with open_video(three_sec, backend="auto") as v:
        assert v.backend == ("torchcodec" if has_tc else "pyav")
    if not has_tc:
        with pytest.raises(VideoDecodeError, match="TorchCodec"):
            open_video(three_sec, backend="torchcodec")
    with pytest.raises(ValueError):
        open_video(three_sec, backend="opencv")


def test_videogen_counter_survives_compression(tmp_path):
    p = make_video(tmp_path / "q.mp4", codec="h264", num_frames=40, quality=40)
    frames, _ = reference_decode(p)
    assert [read_index(f) for f in frames] == list(range(40))
    assert math.isclose(len(frames), 40)
