"""motion_tiny: a small network that tells eight screen motions apart, with its weights in the package.

The network is a MotionNet (videozoo.models.motionnet: frame-to-frame feature correlation followed
by a small 3D CNN), about 0.66 M parameters, on 8-frame 64x64 clips taken every second frame at
15 fps (a clip spans 1.07 s). It was trained from scratch on the wide variety of
`videozoo.data.synth` (see docs/motion_tiny.md and scripts/train_motion_tiny.py); the weights load
offline, from the installed package, with `weights="default"`.
"""

from __future__ import annotations

from videozoo.data.input_config import InputConfig
from videozoo.models.motionnet import MotionNet
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.weights.sources import WeightSource

CLASS_NAMES = ("move_left", "move_right", "move_up", "move_down", "zoom_in", "zoom_out", "rotate_cw", "rotate_ccw")

WEIGHTS_URL = "package://videozoo.weights.embedded/motion_tiny.safetensors"
# Written by scripts/train_motion_tiny.py --install.
WEIGHTS_SHA256 = "6ae5e96bd90188921472cfa16ab8d809490c7492c940f79c6020f5619c882a01"
WEIGHTS_SIZE = 2654368

INPUT = InputConfig(
    num_frames=8,
    sampling_rate=2,
    fps=15,
    short_side=64,
    crop_size=64,
    train_crop_size=64,
    train_jitter=(64, 80),
    test_clips=3,
    test_crops=3,
)

register(
    ModelSpec(
        name="motion_tiny",
        family="motionnet",
        cls=MotionNet,
        arch={
            "num_frames": INPUT.num_frames,
            "crop_size": INPUT.train_crop_size,
            "appearance": (16, 24),
            "radius": 3,
            "context": 8,
            "widths": (48, 64, 96, 128),
            "dropout": 0.0,
        },
        input=INPUT,
        weights={
            "synthetic_motion": WeightSource(
                url=WEIGHTS_URL,
                format="safetensors",
                license="Apache-2.0",  # trained by this project (scripts/train_motion_tiny.py), under its licence
                sha256=WEIGHTS_SHA256,
                size=WEIGHTS_SIZE,
                num_classes=len(CLASS_NAMES),
                dataset="videozoo.data.synth (wide variety)",
            )
        },
        metrics=Metrics(
            top1=None,
            top5=None,
            gflops=None,
            params_m=None,
            views="1x1",
            source="not a Kinetics-400 model: eight synthetic motions, see docs/motion_tiny.md",
            flops_note="the count leaves out the correlation layer's products, 2.1 M multiply-adds per view",
        ),
        default_weights="synthetic_motion",
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        description="MotionNet (feature correlation + small 3D CNN), 8x2 clips at 64x64: eight screen motions "
        "(slide left/right/up/down, zoom in/out, rotate clockwise/counterclockwise); weights shipped in the package",
        paper="Correlation layer after Dosovitskiy et al. FlowNet: Learning Optical Flow with Convolutional "
        "Networks. ICCV 2015 (arXiv:1504.06852)",
    )
)
