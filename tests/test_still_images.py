"""Still images are not videos: `videozoo predict` and `POST /v1/predict` refuse them (exit 1 / 415
`not_a_video`, naming the file) unless asked to score them as one-frame clips; animated images and
real videos keep working. The pictures are made here, told apart by their bytes, not their names."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from videogen import make_video
from videozoo.cli.main import main
from videozoo.io import StillImageError, open_video, still_image

MODEL = "motion_tiny"


def _picture(size=(32, 24), shade=0) -> Image.Image:
    return Image.new("RGB", size, (200, shade, 40))


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _animated(fmt: str) -> bytes:
    frames = [_picture(shade=40 * i) for i in range(6)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)


def _exif_jpeg() -> bytes:
    # A JPEG whose EXIF block holds a whole second JPEG (a thumbnail): still one picture.
    thumb = _save(_picture((8, 6)), "JPEG")
    body = _save(_picture(), "JPEG")
    app1 = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + thumb
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    return body[:2] + segment + body[2:]


# (name, bytes, the format named in the refusal)
STILL = [
    ("one-pixel.png", lambda: _save(_picture((1, 1)), "PNG"), "PNG"),
    ("photo.jpg", lambda: _save(_picture(), "JPEG"), "JPEG"),
    ("exif-thumbnail.jpg", _exif_jpeg, "JPEG"),
    ("picture.bmp", lambda: _save(_picture(), "BMP"), "BMP"),
    ("picture.webp", lambda: _save(_picture(), "WEBP"), "WebP"),
    ("one-picture.gif", lambda: _save(_picture(), "GIF"), "GIF"),
    ("scan.tiff", lambda: _save(_picture(), "TIFF"), "TIFF"),
    ("named-like-a-video.mp4", lambda: _save(_picture(), "PNG"), "PNG"),  # the bytes decide, not the name
]
# Several pictures: videos, decoded as such.
MOVING = [
    ("animated.gif", lambda: _animated("GIF")),
    ("animated.png", lambda: _animated("PNG")),  # APNG
    ("motion.mjpeg", lambda: b"".join(_save(_picture(shade=40 * i), "JPEG") for i in range(6))),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pictures")
    out = {}
    for name, make, *_ in STILL + MOVING:
        out[name] = root / name
        out[name].write_bytes(make())
    out["clip.mp4"] = make_video(root / "clip.mp4", num_frames=24, width=64, height=48, fps=15)
    return out


@pytest.mark.filterwarnings("ignore:.*before the declared duration")  # a picture lasts 0 s of its 0.1 s
@pytest.mark.parametrize("name, make, kind", STILL, ids=[c[0] for c in STILL])
def test_still_images_are_found_by_their_bytes(files, name, make, kind):
    assert still_image(files[name]) == kind
    with pytest.raises(StillImageError, match=rf"is a still image \({kind}\), not a video") as info:
        open_video(files[name])
    assert info.value.path == str(files[name]) and info.value.kind == kind
    with open_video(files[name], images=True) as video:  # asked for: one frame
        assert video.decode_all().frames.shape[1] == 1


@pytest.mark.parametrize("name", [c[0] for c in MOVING] + ["clip.mp4"])
def test_animated_images_and_videos_are_videos(files, name):
    assert still_image(files[name]) is None
    with open_video(files[name]) as video:
        assert video.decode_all().frames.shape[1] > 1


@pytest.mark.parametrize("name, make, kind", STILL, ids=[c[0] for c in STILL])
def test_predict_refuses_a_still_image(files, capsys, name, make, kind):
    torch.set_num_threads(1)
    assert main(["predict", str(files[name]), "--model", MODEL, "--json"]) == 1
    err = capsys.readouterr()
    assert '"error"' in err.out and "Traceback" not in err.err
    message = err.out
    assert str(files[name]) in message and f"still image ({kind})" in message and "--allow-images" in message


def test_predict_allow_images_scores_a_one_frame_clip(files, capsys):
    assert main(["predict", str(files["one-pixel.png"]), "--model", MODEL, "--allow-images", "--json"]) == 0
    assert '"short_video": true' in capsys.readouterr().out


def test_predict_goes_on_past_a_still_image(files, capsys):
    paths = [files["photo.jpg"], files["animated.gif"], files["clip.mp4"]]
    assert main(["predict", *map(str, paths), "--model", MODEL, "--json"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and '"error"' in lines[0]
    assert all('"top_k"' in line for line in lines[1:])
