"""``get_clips(..., select=fn)``: only the frames a view keeps are converted to RGB."""

import warnings

import av
import pytest
import torch

from videogen import corrupt_bytes, iter_indices, make_frame_folder, make_video
from videozoo.data.transforms import temporal_indices
from videozoo.io import DamagedVideoWarning, open_video

av.logging.set_level(None)


def every(step, offset=0):
    """select keeping every ``step``-th frame of a window, from ``offset``."""

    def fn(i, pts):
        return torch.arange(offset, pts.numel(), step)

    return fn


def linspace8(i, pts):
    return temporal_indices(pts.numel(), 8)


SOURCES = {
    "h264-bframes-mp4": lambda d: make_video(d / "a.mp4", codec="h264", bframes=True, num_frames=90, gop=15),
    "mpeg4-bframes-ts": lambda d: make_video(d / "a.ts", codec="mpeg4", bframes=True, num_frames=90, gop=15),
    "vp9-webm": lambda d: make_video(d / "a.webm", codec="vp9", num_frames=90, gop=15),
    "rotated-mp4": lambda d: make_video(d / "r.mp4", codec="h264", num_frames=90, gop=15, rotate=90),
    "frame-folder": lambda d: make_frame_folder(d / "frames", num_frames=90, ext="png"),
}
WINDOWS = [(0.0, 1.0), (0.5, 1.5), (-0.5, 0.4), (2.2, 5.0), (1.0, 2.0), (0.5, 1.5)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    return {name: make(root) for name, make in SOURCES.items()}


def distinct_selected(clips):
    return len({float(t) for c in clips for t in c.pts_sec})


@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("select", [linspace8, every(3, 1)], ids=["linspace8", "every3"])
def test_selected_frames_equal_full_clips(sources, name, select):
    with open_video(sources[name]) as v:
        full = v.get_clips(WINDOWS)
        converted_full = v.stats.frames_converted
        v.stats.reset()
        part = v.get_clips(WINDOWS, select=select)
        stats = v.stats
    for i, (f, p) in enumerate(zip(full, part, strict=True)):
        pos = select(i, f.pts_sec)
        assert p.frames.dtype == torch.uint8 and p.frames.is_contiguous()
        assert torch.equal(p.frames, f.frames[:, pos])  # exact bytes
        assert torch.equal(p.pts_sec, f.pts_sec[pos])
        assert torch.equal(p.window_pts_sec, f.pts_sec)
        assert (p.start_sec, p.end_sec) == (f.start_sec, f.end_sec)
        assert p.lost == []
        assert torch.equal(f.window_pts_sec, f.pts_sec)  # a full clip's window is its frames
    assert stats.frames_converted == distinct_selected(part)
    assert stats.frames_converted < converted_full
    assert stats.passes == 1


def test_conversions_counted_once_across_windows_and_repeats(sources):
    path = sources["h264-bframes-mp4"]
    # Windows 0 and 1 are the same span; window 2 overlaps both by 15 frames.
    windows = [(0.0, 1.0), (0.0, 1.0), (0.5, 1.5)]
    picks = {0: [0, 0, 20, 15], 1: [15, 29, 29], 2: [0, 14, 29]}
    with open_video(path) as v:
        clips = v.get_clips(windows, select=lambda i, pts: torch.tensor(picks[i]))
        # Frames 0, 15, 20, 29 of the first span, 15 and 29 shared with
        # window 2 (its positions 0 and 14), and 44 of window 2 only.
        assert v.stats.frames_converted == 5
    assert [list(iter_indices(c.frames)) for c in clips] == [[0, 0, 20, 15], [15, 29, 29], [15, 29, 44]]
    assert [c.num_frames for c in clips] == [4, 3, 3]
    for c in clips:
        assert c.window_pts_sec.numel() == 30
    assert torch.equal(clips[0].frames[:, 0], clips[0].frames[:, 1])
    clips[0].frames.zero_()  # no clip aliases another, nor a repeat its original
    assert clips[1].frames.max() > 0
    assert clips[2].frames[:, 1].max() > 0


def test_select_sees_window_index_and_timestamps(sources):
    calls = {}

    def record(i, pts):
        calls[i] = pts.clone()
        return torch.tensor([pts.numel() - 1])

    windows = [(2.0, 2.5), (0.0, 0.5), (1.0, 1.2)]  # not in decoding order
    with open_video(sources["h264-bframes-mp4"]) as v:
        clips = v.get_clips(windows, select=record)
        assert sorted(calls) == [0, 1, 2]
        assert torch.allclose(calls[1], torch.arange(15, dtype=torch.float64) / 30)
        assert calls[1].dtype == torch.float64
        assert torch.equal(calls[0], clips[0].window_pts_sec)
        single = v.get_clip(1.0, 1.5, select=record)
    assert [list(iter_indices(c.frames)) for c in clips] == [[74], [14], [35]]
    assert list(iter_indices(single.frames)) == [44]
    assert torch.equal(calls[0], single.window_pts_sec)


def test_empty_selection(sources):
    with open_video(sources["h264-bframes-mp4"]) as v:
        clip = v.get_clip(0.2, 0.8, select=lambda i, pts: torch.empty(0, dtype=torch.long))
        assert v.stats.frames_converted == 0
    assert clip.frames.shape == (3, 0, 48, 64)
    assert clip.pts_sec.shape == (0,)
    assert clip.window_pts_sec.numel() == 18


def test_rotated_empty_selection_has_displayed_size(sources):
    with open_video(sources["rotated-mp4"]) as v:
        clip = v.get_clip(0.2, 0.8, select=lambda i, pts: torch.zeros(0, dtype=torch.int64))
    assert clip.frames.shape == (3, 0, 64, 48)


@pytest.mark.parametrize(
    "returned,match",
    [
        (lambda n: torch.tensor([0, n]), r"position 30 .*window 0 \[0.0, 1.0\).*30 decoded frame\(s\)"),
        (lambda n: torch.tensor([-1, 2]), r"position -1 .*window 0"),
        (lambda n: torch.tensor([0.0, 1.0]), r"float.*1-D integer tensor"),
        (lambda n: torch.tensor([[0, 1]]), r"shape \(1, 2\).*1-D integer tensor"),
        (lambda n: torch.tensor([True, False]), r"bool.*1-D integer tensor"),
        (lambda n: "first", r"select returned str"),
    ],
    ids=["past-end", "negative", "float", "2-d", "bool", "not-a-tensor"],
)
def test_bad_selection_names_file_and_window(sources, returned, match):
    path = sources["h264-bframes-mp4"]
    with open_video(path) as v:
        with pytest.raises(ValueError, match=match) as info:
            v.get_clip(0.0, 1.0, select=lambda i, pts: returned(pts.numel()))
    assert str(path) in str(info.value)


def test_select_must_be_callable(sources):
    with open_video(sources["h264-bframes-mp4"]) as v:
        with pytest.raises(TypeError, match="select must be a function"):
            v.get_clips([(0.0, 1.0)], select=[0, 1])
        assert v.stats.frames_decoded == 0


def test_plain_sequences_of_ints_are_accepted(sources):
    with open_video(sources["h264-bframes-mp4"]) as v:
        clip = v.get_clip(1.0, 2.0, select=lambda i, pts: [2, 1])
    assert list(iter_indices(clip.frames)) == [32, 31]


@pytest.mark.parametrize("name", ["h264-bframes-mp4", "frame-folder"])
def test_frames_held_no_more_than_without_selection(sources, name):
    # The 10 views of a 10x1 evaluation of a 1-s clip length over 3 s.
    windows = [(s, s + 1.0) for s in torch.linspace(0, 2.0, 10).tolist()]
    with open_video(sources[name]) as v:
        v.get_clips(windows)
        held_full = v.stats.peak_frames_held
        v.stats.reset()
        clips = v.get_clips(windows, select=linspace8)
        held_sel = v.stats.peak_frames_held
        assert v.stats.frames_converted == distinct_selected(clips) <= 80
    assert 0 < held_sel <= held_full
    assert held_full <= 31  # one window's frames (+ the one that closes it)


def test_damage_still_reported_with_selection(tmp_path):
    p = make_video(tmp_path / "d.mp4", codec="h264", num_frames=150, gop=30, pattern="noise")
    corrupt_bytes(p, at=0.5, length=3000, seed=1)
    with open_video(p) as v:
        with pytest.warns(DamagedVideoWarning, match="d.mp4"):
            full = v.get_clip(0.0, 5.0)
    with open_video(p) as v:
        with pytest.warns(DamagedVideoWarning, match="d.mp4"):
            part = v.get_clip(0.0, 5.0, select=every(10))
    assert part.lost and part.lost == full.lost
    assert torch.equal(part.window_pts_sec, full.pts_sec)
    assert torch.equal(part.frames, full.frames[:, ::10])


def test_truncated_tail_reported_with_selection(tmp_path):
    from videogen import truncate

    p = truncate(make_video(tmp_path / "t.mkv", codec="h264", num_frames=60), keep=0.5)
    with open_video(p) as v:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clip = v.get_clip(0.5, 2.0, select=every(2))
    assert any("truncated" in x.reason for x in clip.lost)
    assert any(issubclass(w.category, DamagedVideoWarning) for w in caught)
    assert clip.num_frames == (clip.window_pts_sec.numel() + 1) // 2
