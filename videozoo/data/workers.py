"""Worker processes that cannot hang a job: every loader's workers are watched.

    loader = WatchedLoader(dataset, num_workers=2, stall_seconds=120, describe=lambda i: paths[i])
    for item in loader: ...          # raises WorkerStalled (after stopping the stuck worker)

Each worker stamps, in memory shared with the main process, the item it is loading and the time of
its last progress: the start of an item and every decoded frame (``videozoo.io.progress``). A thread
of the main process checks the stamps; a worker that is busy and has made no progress for
``stall_seconds`` has its Python stacks written out (``faulthandler``, which works even when the
worker is stuck inside FFmpeg) and is stopped. The loader then raises :class:`WorkerStalled` at the
next item, naming the item and carrying the stack; the caller records an error and goes on over the
remaining items (``Engine.map``) or stops with one message after saving its state (training).

Worker processes start with ``fork`` by default (fast, and decoding is fork-safe: ``videozoo.io.rgb``);
``VIDEOZOO_WORKER_START=forkserver`` or ``spawn`` starts them afresh instead (costs in docs/io.md).
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from videozoo.io import progress

#: No healthy video goes this long without a decoded frame, even on a slow CPU.
DEFAULT_STALL_SECONDS = 120.0
START_METHODS = ("fork", "forkserver", "spawn")
START_ENV = "VIDEOZOO_WORKER_START"
# Columns of the shared table, one row per worker.
_PID, _ITEM, _BUSY, _BEAT = range(4)
_DUMP_WAIT = 3.0  # seconds to wait for a stalled worker's stack to be written


def check_stall_seconds(value: float | None, flag: str = "--stall-timeout") -> float:
    """The stall bound in seconds (``None``: the default); one clear error for a bad value."""
    if value is None:
        return DEFAULT_STALL_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} {value!r}: not a number of seconds") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{flag} {value!r}: must be a positive, finite number of seconds")
    return seconds


def worker_context(method: str | None = None) -> multiprocessing.context.BaseContext:
    """The multiprocessing context loader workers start in: ``method``, else $VIDEOZOO_WORKER_START,
    else ``fork`` where the platform has it."""
    chosen = method or os.environ.get(START_ENV) or None
    if chosen is None:
        chosen = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if chosen not in START_METHODS:
        where = f"${START_ENV}" if method is None else "start method"
        raise ValueError(f"{where}={chosen!r}: choose one of {', '.join(START_METHODS)}")
    if chosen not in multiprocessing.get_all_start_methods():
        raise ValueError(f"worker start method {chosen!r} is not available on this platform")
    return multiprocessing.get_context(chosen)


@dataclass(frozen=True)
class Stall:
    """A worker stopped for making no progress."""

    item: int  # the dataset index it was loading
    label: str  # what that item is (a video's path)
    seconds: float  # since its last progress
    limit: float  # the bound it passed
    stack: str  # its Python stacks, as faulthandler wrote them

    @property
    def reason(self) -> str:
        return (
            f"{self.label}: no progress for {self.seconds:.0f} s while decoding (limit --stall-timeout "
            f"{self.limit:g} s); its worker was stopped"
        )

    @property
    def innermost(self) -> str:
        """The innermost frame of the stuck thread's stack, one line (or '')."""
        for line in self.stack.splitlines():
            if line.strip().startswith("File "):
                return line.strip()
        return ""

    @property
    def error(self) -> str:
        """The item's error entry: the reason and where the worker was stuck."""
        where = f" (stuck in {self.innermost})" if self.innermost else ""
        return f"Stalled: {self.reason}{where}"

    def report(self) -> str:
        return f"{self.reason}. Its worker's stack (most recent call first):\n{self.stack.rstrip() or '(not written)'}"


class WorkerStalled(RuntimeError):
    """One or more workers made no progress and were stopped."""

    def __init__(self, stalls: list[Stall]):
        super().__init__("; ".join(s.reason for s in stalls))
        self.stalls = list(stalls)


class _Watched(Dataset):
    """The dataset seen by the workers: stamps the item and the progress of each load."""

    def __init__(self, dataset: Dataset, table: Any, workers: int, stack_dir: str, init: Callable | None):
        self.dataset, self.table, self.workers, self.stack_dir, self.init = dataset, table, workers, stack_dir, init
        self._row: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        row = self._row
        if row is None:  # the main process (num_workers=0 never wraps): nothing to stamp
            return self.dataset[index]
        row[_ITEM], row[_BEAT], row[_BUSY] = index, time.monotonic(), 1.0
        try:
            return self.dataset[index]
        finally:
            row[_BUSY], row[_BEAT] = 0.0, time.monotonic()

    def start_worker(self, worker_id: int) -> None:
        row = np.frombuffer(self.table, dtype=np.float64).reshape(self.workers, 4)[worker_id]
        row[_PID], row[_BUSY], row[_BEAT] = os.getpid(), 0.0, time.monotonic()
        self._row = row

        def stamp() -> None:
            row[_BEAT] = time.monotonic()

        progress.set_hook(stamp)
        # Written by a C-level handler: works while the worker is stuck inside native code.
        stack_file = open(
            os.path.join(self.stack_dir, f"worker-{worker_id}.txt"), "w"
        )  # open for the worker's lifetime
        faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True, chain=False)
        if self.init is not None:
            self.init(worker_id)


def _start_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    assert info is not None and isinstance(info.dataset, _Watched)
    info.dataset.start_worker(worker_id)


class WatchedLoader:
    """A :class:`~torch.utils.data.DataLoader` whose worker processes are watched for stalls.

    ``describe(index)`` names a dataset item in messages (a video's path). Every other keyword goes
    to the DataLoader. With ``num_workers=0`` the items load in this process, unwatched.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_workers: int = 0,
        stall_seconds: float | None = None,
        describe: Callable[[int], str] = str,
        worker_init_fn: Callable[[int], None] | None = None,
        start_method: str | None = None,
        **kwargs: Any,
    ):
        self.stall_seconds = check_stall_seconds(stall_seconds)
        self.describe = describe
        self.num_workers = num_workers
        self._dataset = dataset
        self._init = worker_init_fn
        self._kwargs = kwargs
        self._context = worker_context(start_method) if num_workers > 0 else None
        # For len() and the batch count; each iteration builds its own loader over fresh workers.
        self._plain = DataLoader(dataset, num_workers=0, **{k: v for k, v in kwargs.items() if k != "prefetch_factor"})

    def __len__(self) -> int:
        return len(self._plain)

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            yield from self._plain
            return
        assert self._context is not None
        workers = self.num_workers
        table = self._context.RawArray("d", workers * 4)
        stack_dir = tempfile.mkdtemp(prefix="videozoo-workers-")
        watched = _Watched(self._dataset, table, workers, stack_dir, self._init)
        loader = DataLoader(
            watched,
            num_workers=workers,
            worker_init_fn=_start_worker,
            multiprocessing_context=self._context,
            **self._kwargs,
        )
        it = iter(loader)
        monitor = _Monitor(table, workers, self.stall_seconds, stack_dir, self.describe, it)
        monitor.start()
        try:
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    break
                except RuntimeError:
                    # A worker is gone: the one the monitor stopped, or a real crash (re-raised).
                    if monitor.stalls:
                        raise WorkerStalled(monitor.stalls) from None
                    raise
                yield item
                if monitor.stalls:  # a worker stopped while this item was being used
                    raise WorkerStalled(monitor.stalls)
        finally:
            monitor.stop()
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            del it, loader
            shutil.rmtree(stack_dir, ignore_errors=True)


class _Monitor(threading.Thread):
    """Checks the workers' stamps; stops a worker stalled past the bound and keeps its stack."""

    def __init__(self, table: Any, workers: int, limit: float, stack_dir: str, describe: Callable, it: Any):
        super().__init__(name="videozoo-worker-watchdog", daemon=True)
        self.rows = np.frombuffer(table, dtype=np.float64).reshape(workers, 4)
        self.limit, self.stack_dir, self.describe, self.it = limit, stack_dir, describe, it
        self.stalls: list[Stall] = []
        self._done = threading.Event()
        self._stopped: set[int] = set()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def run(self) -> None:
        interval = min(1.0, self.limit / 4)
        while not self._done.wait(interval):
            now = time.monotonic()
            for wid, row in enumerate(self.rows):
                if wid in self._stopped or row[_BUSY] != 1.0 or now - row[_BEAT] <= self.limit:
                    continue
                item, beat, pid = int(row[_ITEM]), float(row[_BEAT]), int(row[_PID])
                stack = self._dump(wid, pid)
                if row[_BUSY] != 1.0 or int(row[_ITEM]) != item or row[_BEAT] != beat:
                    continue  # it moved on while its stack was taken
                self._forget_pids()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._stopped.add(wid)
                try:
                    label = str(self.describe(item))
                except Exception:
                    label = f"item {item}"
                stall = Stall(item, label, time.monotonic() - beat, self.limit, stack)
                print(f"videozoo: {stall.report()}", file=sys.stderr, flush=True)
                self.stalls.append(stall)

    def _dump(self, wid: int, pid: int) -> str:
        path = os.path.join(self.stack_dir, f"worker-{wid}.txt")
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return ""
        deadline = time.monotonic() + _DUMP_WAIT
        text, settled = "", 0
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(OSError):
                with open(path) as f:
                    new = f.read()
                settled = settled + 1 if new and new == text else 0
                text = new
            if settled >= 2:
                break
        return text

    def _forget_pids(self) -> None:
        # The loader's SIGCHLD handler would raise in whatever the main thread is doing when it sees a
        # worker killed; dropping the registration lets the loader notice at its next item instead.
        it = self.it
        if getattr(it, "_worker_pids_set", False):
            from torch.utils.data._utils import signal_handling

            with contextlib.suppress(Exception):
                signal_handling._remove_worker_pids(id(it))
            it._worker_pids_set = False
