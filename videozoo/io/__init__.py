"""Video decoding: clips of RGB frames from video files and frame folders.

>>> from videozoo.io import open_video
>>> with open_video("video.mp4") as v:          # doctest: +SKIP
...     clips = v.get_clips([(0.0, 2.0), (1.0, 3.0)])
...     clips[0].frames.shape                   # (3, T, H, W) uint8 RGB
"""

from .errors import DamagedVideoWarning, VideoDecodeError
from .video import (
    Clip,
    DecodeStats,
    FrameFolderVideo,
    LostFrame,
    PyAVVideo,
    TorchCodecVideo,
    Video,
    open_video,
)

__all__ = [
    "Clip",
    "DamagedVideoWarning",
    "DecodeStats",
    "FrameFolderVideo",
    "LostFrame",
    "PyAVVideo",
    "TorchCodecVideo",
    "Video",
    "VideoDecodeError",
    "open_video",
]
