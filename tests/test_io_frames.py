"""Frame folders: which files are the frames (one numbering pattern per folder)."""

import av
import numpy as np
import pytest

from videogen import counter_frame, iter_indices
from videozoo.io import DamagedVideoWarning, VideoDecodeError, open_video
from videozoo.io.frames import FramePattern, find_pattern

av.logging.set_level(None)


def write(folder, name, index, size=(64, 48)):
    """A counter picture showing ``index`` saved as ``folder/name``."""
    frame = av.VideoFrame.from_ndarray(counter_frame(index, *size), format="rgb24")
    path = folder / name
    tmp = folder / ("_writing" + path.suffix.lower().replace(".jpeg", ".jpg"))  # PyAV wants .png/.jpg
    if tmp.suffix == ".jpg":
        frame.save(str(tmp), qscale=2)
    else:
        frame.save(str(tmp))
    tmp.rename(path)


# name: (frame names as (template, numbers), extra files, expected pattern, expected numbers)
LAYOUTS = {
    "i3d-img_%05d.jpg": (("img_{:05d}.jpg", range(1, 13)), ["cover.png", "notes.txt"], "img_%05d.jpg", range(1, 13)),
    "bare-%05d.jpg-from-0": (("{:05d}.jpg", range(0, 12)), ["thumb.jpg"], "%05d.jpg", range(0, 12)),
    "frame_%06d.png-with-thumbnails": (
        ("frame_{:06d}.png", range(1, 11)),
        ["thumb_01.jpg", "thumb_02.jpg", "thumb_03.jpg"],
        "frame_%06d.png",
        range(1, 11),
    ),
    "unpadded-image_%d.jpg": (("image_{:d}.jpg", range(1, 13)), ["image_cover.jpg"], "image_%d.jpg", range(1, 13)),
    "upper-case-extension": (("IMG_{:04d}.JPG", range(1, 9)), [], "IMG_%04d.JPG", range(1, 9)),
    "more-numbers-than-padding": (("img_{:02d}.png", range(95, 105)), [], "img_%02d.png", range(95, 105)),
    "majority-pattern-wins": (
        ("b_{:03d}.png", range(1, 10)),
        [f"a_{i:03d}.png" for i in range(1, 6)],
        "b_%03d.png",
        range(1, 10),
    ),
    "digits-in-the-prefix": (
        ("cam2_take3_{:05d}.png", range(1, 9)),
        ["cam2_cover.png"],
        "cam2_take3_%05d.png",
        range(1, 9),
    ),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_frame_folder_layouts(tmp_path, name):
    (template, numbers), extra, pattern, expected = LAYOUTS[name]
    folder = tmp_path / "f"
    folder.mkdir()
    numbers = list(numbers)
    for k, n in enumerate(numbers):
        write(folder, template.format(n), k)
    for other in extra:
        if other.endswith(".txt"):
            (folder / other).write_text("not a frame")
        else:
            write(folder, other, 999, size=(32, 24))  # other images: other content and size
    with open_video(folder, fps=10) as v:
        assert v.pattern == pattern
        assert v.numbers == list(expected)
        assert sorted(v.ignored) == sorted(extra)
        assert v.num_frames == len(numbers) and v.duration == pytest.approx(len(numbers) / 10)
        assert (v.width, v.height) == (64, 48)
        clip = v.decode_all()
    assert list(iter_indices(clip.frames)) == list(range(len(numbers)))
    np.testing.assert_allclose(clip.pts_sec.numpy(), np.arange(len(numbers)) / 10)


# name: (files, error)
BAD_FOLDERS = {
    "only-unnumbered-images": (["cover.png", "poster.jpg"], "no numbered image frames.*cover.png"),
    "no-images": (["notes.txt", "frames.csv"], r"no image frames \(.jpg"),
    "empty": ([], "no image frames"),
}


@pytest.mark.parametrize("name", list(BAD_FOLDERS))
def test_folders_without_frames(tmp_path, name):
    files, match = BAD_FOLDERS[name]
    folder = tmp_path / "f"
    folder.mkdir()
    for f in files:
        if f.endswith((".png", ".jpg")):
            write(folder, f, 1)
        else:
            (folder / f).write_text("x")
    with pytest.raises(VideoDecodeError, match=match) as info:
        open_video(folder)
    assert str(info.value).startswith(f"{folder}: ")


@pytest.mark.parametrize(
    "names,pattern,numbers",
    [
        (["1.jpg", "2.jpg", "10.jpg", "100.jpg"], "%d.jpg", [1, 2, 10, 100]),
        (["001.jpg", "002.jpg", "010.jpg", "100.jpg", "1000.jpg"], "%03d.jpg", [1, 2, 10, 100, 1000]),
        (["7.png", "8.png", "9.png"], "%d.png", [7, 8, 9]),
        # Same files both ways: the padded reading is chosen.
        (["10.png", "11.png", "12.png"], "%02d.png", [10, 11, 12]),
        # img_1 is not img_%02d's frame 1 (that is img_01).
        (["img_01.png", "img_02.png", "img_1.png"], "img_%02d.png", [1, 2]),
        (["x.png", "y.png"], None, None),
    ],
)
def test_find_pattern(names, pattern, numbers):
    found = find_pattern(names)
    if pattern is None:
        assert found is None
        return
    pat, frames = found
    assert str(pat) == pattern
    assert sorted(frames) == numbers
    assert all(pat.name(n) == frames[n] for n in frames)
    assert find_pattern(list(reversed(names)))[0] == pat  # listing order does not matter


def test_pattern_names_and_numbers():
    p = FramePattern("img_", 5, ".jpg")
    assert p.name(42) == "img_00042.jpg" and p.number("img_00042.jpg") == 42
    assert p.number("img_0042.jpg") is None and p.number("img_00042.png") is None
    assert p.number("img_123456.jpg") == 123456  # wider than the padding, as printf writes it


def test_gap_in_numbering_reported_as_lost_frames(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    present = [1, 2, 3, 4, 8, 9, 10]  # 5, 6, 7 missing
    for n in present:
        write(folder, f"img_{n:05d}.png", n - 1)
    with open_video(folder, fps=10) as v:
        assert v.num_frames == 10
        with pytest.warns(DamagedVideoWarning, match="3 frame"):
            clip = v.get_clip(0.0, 1.0)
    assert list(iter_indices(clip.frames)) == [0, 1, 2, 3, 7, 8, 9]
    np.testing.assert_allclose(clip.pts_sec.numpy(), (np.array(present) - 1) / 10)
    (lost,) = clip.lost
    assert lost.count == 3 and not lost.kept and lost.pts_sec == pytest.approx(0.4)
    assert "img_00005.png ... img_00007.png" in lost.reason
