"""Video decoding: clips of RGB frames from video files, frame folders and streams.

>>> from videozoo.io import open_video
>>> with open_video("video.mp4") as v:          # doctest: +SKIP
...     clips = v.get_clips([(0.0, 2.0), (1.0, 3.0)])
...     clips[0].frames.shape                   # (3, T, H, W) uint8 RGB
>>> with open_video("-") as v:                  # doctest: +SKIP
...     for frame in v.frames():                # a stream on standard input, in order
...         frame.pts_sec, frame.rgb().shape    # seconds, (3, H, W) uint8 RGB
"""

from .base import Video
from .clip import Clip, DecodeStats, Frame, LostFrame
from .errors import DamagedVideoWarning, EmptyWindowError, StillImageError, VideoDecodeError
from .frames import FrameFolderVideo
from .open import open_video
from .pyav import PyAVVideo
from .still import still_image
from .stream import StreamVideo
from .torchcodec import TorchCodecVideo

__all__ = [
    "Clip",
    "DamagedVideoWarning",
    "DecodeStats",
    "EmptyWindowError",
    "Frame",
    "FrameFolderVideo",
    "LostFrame",
    "PyAVVideo",
    "StillImageError",
    "StreamVideo",
    "TorchCodecVideo",
    "Video",
    "VideoDecodeError",
    "open_video",
    "still_image",
]
