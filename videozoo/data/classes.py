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
