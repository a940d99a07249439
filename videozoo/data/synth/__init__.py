"""Synthetic action videos whose classes differ only in how things move.

Every video shows textured objects over a textured background that drifts slowly in a random
direction. The class says what the objects do: slide left/right/up/down, grow or shrink, or spin
clockwise or counterclockwise (as seen on screen); four diagonal slides
(:data:`DIAGONAL_CLASSES`) are there for tasks beyond those eight. Everything else (shapes, textures, colours,
sizes, positions, background, drift, lighting, sensor noise) is drawn from the same distributions
for every class. Two scene generators share this contract: ``"classic"`` (one object, one kind of
look; :mod:`videozoo.data.synth.classic`) and ``"wide"`` (one to three objects of many shapes and
textures, several kinds of background, camera shake, changing brightness;
:mod:`videozoo.data.synth.wide`).

Opposite classes are exact time reversals of each other: rendering ``move_left`` from a random
generator in a given state gives the frames of ``move_right`` from the same state played backwards.
Time reversal maps the appearance distribution onto itself (drift directions are uniform, noise is
independent per frame), so for a pair of opposite classes any orderless summary of the frames (one
frame picked at random, a histogram, the mean of per-frame features) has the same distribution under
both classes, and only a model that uses frame order can tell them apart. Positions live on a torus
(an object leaving one edge comes back at the other) and start angles are uniform, so for the
slides and spins even the frame at a fixed index carries no class information; for the zooms that
holds once the index is unknown (a zoom-in clip starts small).

Sizes, speeds and drift are given relative to the short side of the picture, so a dataset renders
the same scenes at any resolution. The files are H.264 MP4s; next to them go ``train.txt`` and
``val.txt`` (``relative/path.mp4 class_name`` lines), ``classes.txt`` and ``synth.json``.
"""

from videozoo.data.synth.dataset import VARIETIES, DatasetInfo, make_dataset, render_sequence, render_video, write_video
from videozoo.data.synth.scene import DEFAULT_CLASSES, DIAGONAL_CLASSES, MOTIONS, OPPOSITE, SynthVideo, video_rng

__all__ = [
    "DEFAULT_CLASSES",
    "DIAGONAL_CLASSES",
    "MOTIONS",
    "OPPOSITE",
    "VARIETIES",
    "DatasetInfo",
    "SynthVideo",
    "make_dataset",
    "render_sequence",
    "render_video",
    "video_rng",
    "write_video",
]
