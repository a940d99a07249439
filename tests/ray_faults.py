"""A Ray worker set-up hook for tests/test_ray.py: makes a worker process die the first time it
reaches a fault point whose marker file exists.

``$VIDEOZOO_TEST_FAULTS`` names a folder; a file ``decode`` there kills the first decoding task that
starts a video, a file ``engine`` the first engine actor that runs a forward pass. The marker is
claimed by removing it (one process wins), and ``<name>.died`` is written just before the exit, so
the test knows the fault happened.
"""

import os
from pathlib import Path


def _die_once(name: str) -> None:
    folder = os.environ.get("VIDEOZOO_TEST_FAULTS")
    if not folder:
        return
    marker = Path(folder) / name
    try:
        marker.unlink()  # only one process claims the marker
    except FileNotFoundError:
        return
    (Path(folder) / f"{name}.died").write_text(str(os.getpid()))
    os._exit(1)  # as a killed process: no exception, no clean-up


def install() -> None:
    from videozoo.engine import Engine
    from videozoo.jobs import dense

    window_batches = dense.window_batches
    forward = Engine.forward

    def dying_window_batches(*args, **kwargs):
        _die_once("decode")
        return window_batches(*args, **kwargs)

    def dying_forward(self, *args, **kwargs):
        _die_once("engine")
        return forward(self, *args, **kwargs)

    dense.window_batches = dying_window_batches
    Engine.forward = dying_forward
