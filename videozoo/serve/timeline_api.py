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


def run(engine: Engine, path: str, **options: Any) -> dict[str, Any]:
    """The timeline.json object of the video at ``path``, scored by ``engine``."""
    raise NotImplementedError("the timeline job is not installed")
