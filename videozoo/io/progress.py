"""A heartbeat for decoding: called once per decoded frame, so a supervisor can tell slow from stuck.

Worker pools (``videozoo.data.workers``) install a hook in each worker process that stamps the time
into shared memory; a worker whose stamp stops moving is stalled. With no hook installed (a plain
process) :func:`beat` costs one global look-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_hook: Callable[[], None] | None = None


def set_hook(hook: Callable[[], None] | None) -> None:
    """Call ``hook()`` at every :func:`beat` of this process (``None`` removes it)."""
    global _hook
    _hook = hook


def beat() -> None:
    hook = _hook
    if hook is not None:
        hook()


def beating(items: Iterable[T]) -> Iterator[T]:
    """``items``, with a beat before each one is handed on."""
    for item in items:
        beat()
        yield item
