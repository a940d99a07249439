"""The timeline endpoint's link to the timeline job (:mod:`videozoo.jobs.timeline`), where installed."""

from __future__ import annotations

import importlib.util
from typing import Any

from videozoo.engine import Engine


def available() -> bool:
    """True where this installation has the timeline job."""
    try:
        return importlib.util.find_spec("videozoo.jobs.timeline") is not None
    except ModuleNotFoundError:
        return False


def run(
    engine: Engine,
    path: str,
    *,
    window: float | None = None,
    stride: float | None = None,
    min_segment: float | None = None,
    smooth: int = 3,
    top_k: int = 5,
    none_threshold: float | None = None,
) -> dict[str, Any]:
    """The timeline.json object of the video at ``path``, scored by the warm ``engine``.

    A video that fails before its first window is an error (``RuntimeError``); one that fails
    part-way keeps the windows computed before, as the timeline job does.
    """
    from videozoo.jobs.timeline import timeline

    result = timeline(
        path,
        model=engine,
        window=window,
        stride=stride,
        min_segment=min_segment,
        smooth=smooth,
        top_k=top_k,
        none_threshold=none_threshold,
    )
    if result.error is not None and not result.windows:
        raise RuntimeError(result.error)
    return result.to_json()
