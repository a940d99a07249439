"""Decoded PyAV frames to RGB, safe across ``fork``.

PyAV 18 gave frame conversion a ``threads`` argument whose default (0) lets FFmpeg's swscale start
a pool of slice threads, and keeps one conversion context per Python thread (``VideoFrame.reformat``
goes through a thread-local reformatter). A process that converted a frame and then forks leaves
children holding that context with a pool whose threads did not survive the fork: the child's first
conversion, or the context's release, waits for them forever. Two measures keep decoding safe:

- videozoo converts with a reformatter of its own per opened video, created in the process that
  decodes, with ``threads=1`` (the worker processes already give the parallelism; the cost is in
  ``docs/io.md``). No conversion of ours ever starts a slice-thread pool.
- After a fork, the child drops the forking thread's inherited thread-local reformatter (left from
  any other code's conversions in the parent) and keeps it referenced, never released: releasing it
  would join the missing threads. That child's own later ``to_ndarray`` calls get a fresh one.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import planar_rgb

#: swscale threads per conversion: one, so that no slice-thread pool exists to be inherited.
SCALER_THREADS = 1

# Inherited conversion contexts that a forked child must never release (see the module docstring).
_ORPHANS: list[Any] = []
_THREADS_ACCEPTED: bool | None = None  # does this PyAV's reformat take ``threads``? (PyAV >= 18)
_HOOKED = False


def _drop_inherited_reformatter() -> None:
    try:
        import av.video.frame as avframe
    except Exception:  # PyAV not importable in this child: nothing inherited to drop
        return
    local = getattr(avframe, "_thread_local", None)
    inherited = getattr(local, "reformatter", None)
    if inherited is not None:
        _ORPHANS.append(inherited)
        local.reformatter = None


def install_fork_guard() -> None:
    """Register the child-side fork handler once per process (idempotent)."""
    global _HOOKED
    if not _HOOKED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_drop_inherited_reformatter)
        _HOOKED = True


# From the first import of videozoo.io on: any fork of this process is covered.
install_fork_guard()


class RGBConverter:
    """Converts decoded frames to planar uint8 RGB ``(3, H, W)`` with a context of its own.

    The context belongs to the process that created it: used after a fork, the converter makes a
    new one in the child and leaves the inherited one unreleased.
    """

    def __init__(self) -> None:
        install_fork_guard()
        self._pid = -1
        self._reformatter: Any = None

    def __call__(self, frame) -> np.ndarray:
        global _THREADS_ACCEPTED
        reformatter = self._context()
        if _THREADS_ACCEPTED is not False:
            try:
                rgb = reformatter.reformat(frame, format="rgb24", threads=SCALER_THREADS)
                _THREADS_ACCEPTED = True
            except TypeError as exc:  # PyAV < 18: no ``threads`` (and no slice-thread pool either)
                if "threads" not in str(exc):
                    raise
                _THREADS_ACCEPTED = False
                rgb = reformatter.reformat(frame, format="rgb24")
        else:
            rgb = reformatter.reformat(frame, format="rgb24")
        # Already rgb24: to_ndarray copies the plane out without another conversion.
        return planar_rgb(rgb.to_ndarray())

    def _context(self):
        pid = os.getpid()
        if self._pid != pid:
            from av.video.reformatter import VideoReformatter

            if self._reformatter is not None:
                _ORPHANS.append(self._reformatter)
            self._reformatter = VideoReformatter()
            self._pid = pid
        return self._reformatter
