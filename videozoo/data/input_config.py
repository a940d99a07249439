"""What a clip must look like when it reaches a model: the one place clip settings live."""

from __future__ import annotations

from dataclasses import dataclass

# pytorchvideo's Kinetics normalisation (0-1 pixel scale).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
# torchvision's video models (R3D, MC3, R(2+1)D, S3D) were trained with these instead.
TORCHVISION_KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
TORCHVISION_KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class InputConfig:
    """What a clip must look like when it reaches the model at evaluation time.

    Frames are sampled `num_frames` apart by `sampling_rate` at `fps` (so one clip spans
    num_frames * sampling_rate / fps seconds), resized so the short side is `short_side` (or to the
    fixed `resize` (H, W) for the torchvision recipe, whose resized values are rounded to integers
    unless `resize_rounded` is False), cropped to `crop_size`, scaled to
    [0, value_scale] and normalised with `mean`/`std` (given in that scale).
    """

    num_frames: int
    sampling_rate: int
    fps: float
    short_side: int
    crop_size: int
    train_crop_size: int
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    value_scale: float = 1.0
    channel_order: str = "RGB"
    resize: tuple[int, int] | None = None
    # torchvision resizes uint8 frames (values rounded); False keeps the float values of the resize.
    resize_rounded: bool = True
    slow_alpha: int | None = None
    test_clips: int = 10
    test_crops: int = 3
    train_jitter: tuple[int, int] = (256, 320)
    # How clip starts are spread over a video in multi-clip testing (see videozoo.data.sampling).
    clip_spacing: str = "pyslowfast"

    @property
    def clip_seconds(self) -> float:
        return self.num_frames * self.sampling_rate / self.fps

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one eval view (the fast pathway for two-pathway models)."""
        return (3, self.num_frames, self.crop_size, self.crop_size)
