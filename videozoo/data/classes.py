"""The Kinetics-400 class names, in the index order of the official checkpoints (alphabetical)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def kinetics400_classes() -> tuple[str, ...]:
    text = resources.files("videozoo.data").joinpath("kinetics400_classes.txt").read_text()
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == 400
    return names


@cache
def k400_rows_in_k710() -> tuple[int, ...]:
    """For each Kinetics-400 class (in the order above), its index among Kinetics-710's classes.

    Kinetics-710 (the union of Kinetics-400, -600 and -700 that VideoMAE V2 trains on) holds every
    Kinetics-400 class; this is the map OpenGVLab/VideoMAEv2 publishes as misc/label_710to400.json,
    so `logits_k400 = logits_k710[..., rows]`.
    """
    text = resources.files("videozoo.data").joinpath("k400_from_k710.txt").read_text()
    rows = tuple(int(line) for line in text.split())
    assert len(rows) == 400 and len(set(rows)) == 400 and max(rows) < 710
    return rows
