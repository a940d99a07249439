"""The inference pool: worker threads, each with its own warm engine per served model.

    pool = InferencePool(build=lambda: {"x3d_xs": Engine.build(...)}, workers=2, max_queue=8)
    pool.start()                         # engines load in the workers, off the event loop
    with pool.admit():                   # one request in the server, or QueueFull
        result = await pool.run(lambda engines: engines["x3d_xs"].predict(path))

Admission bounds the requests inside the server at ``workers`` running plus ``max_queue`` waiting
(uploading counts as waiting, so stored uploads are bounded too); beyond that a request is refused
at once with a retry estimate. PyTorch and the decoder release the GIL, so worker threads run in
parallel; each worker's share of the cores is set by the caller (intra-op threads).
A job is a function of the worker's engines; it runs on the worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from videozoo.engine import Engine

Engines = dict[str, Engine]
Job = Callable[[Engines], Any]


class QueueFull(Exception):
    """Every worker is busy and the queue holds ``max_queue`` requests; ``retry_after`` in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The server is stopping and takes no more work."""


class NotReady(Exception):
    """The models are still loading (or failed to load: ``failure``)."""


class InferencePool:
    def __init__(self, build: Callable[[], Engines], *, workers: int = 1, max_queue: int = 16):
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if max_queue < 0:
            raise ValueError(f"--max-queue must be 0 or more, got {max_queue}")
        self.workers, self.max_queue = workers, max_queue
        self._build = build
        self._jobs: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._admitted = 0
        self._loaded = 0
        self._ready = threading.Event()
        self.failure: str | None = None
        self.closing = False  # set once; read by the workers (a plain flag: safe from a signal handler)
        self.engines: Engines = {}  # the first worker's engines (for model descriptions)
        self._seconds = 0.0  # mean job time, for retry estimates
        self._done = 0
        self._running = 0  # jobs computing now
        self._on_failure: list[Callable[[str], None]] = []

    # -- life cycle -------------------------------------------------------------------------
    def start(self, on_failure: Callable[[str], None] | None = None) -> None:
        if on_failure is not None:
            self._on_failure.append(on_failure)
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"videozoo-serve-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.failure is None

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout) and self.failure is None

    def fail_queued(self) -> int:
        """Fail the jobs not yet started with :class:`ShuttingDown` (from the event loop, once stopping)."""
        self.closing = True
        failed = 0
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._jobs.put(None)
                break
            future, _ = item
            if future.set_running_or_notify_cancel():
                future.set_exception(ShuttingDown())
                failed += 1
        return failed

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new work, fail queued jobs with :class:`ShuttingDown`, wait for running ones."""
        self.closing = True
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def running(self) -> int:
        """Jobs computing right now (a computation cannot be interrupted, only abandoned)."""
        return self._running

    # -- admission --------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead of one worker's share, at the mean job time."""
        per_job = self._seconds if self._done else 1.0
        return max(1, math.ceil(per_job * max(1, self._admitted - self.workers + 1) / self.workers))

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the ``workers + max_queue`` places for the duration of a request."""
        if self.closing:
            raise ShuttingDown()
        if not self.ready:
            raise NotReady()
        with self._lock:
            if self._admitted >= self.workers + self.max_queue:
                raise QueueFull(self.retry_after())
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    # -- work -------------------------------------------------------------------------------
    def submit(self, job: Job) -> concurrent.futures.Future:
        if self.closing:
            raise ShuttingDown()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, job))
        return future

    async def run(self, job: Job) -> Any:
        """Run ``job`` on a worker and await its result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(job))

    def _work(self) -> None:
        try:
            engines = self._build()
        except Exception as e:  # one clear message for the whole server
            self._fail(
                f"{type(e).__name__}: {e}"
                if not isinstance(e, (ValueError, RuntimeError, KeyError))
                else str(e.args[0] if isinstance(e, KeyError) and e.args else e)
            )
            return
        with self._lock:
            if not self.engines:
                self.engines = engines
            self._loaded += 1
            if self._loaded == self.workers:
                self._ready.set()
        while True:
            item = self._jobs.get()
            if item is None:
                return
            future, job = item
            if not future.set_running_or_notify_cancel():  # its request went away
                continue
            if self.closing:
                future.set_exception(ShuttingDown())
                continue
            t0 = time.perf_counter()
            with self._lock:
                self._running += 1
            try:
                result = job(engines)
            except BaseException as e:  # handed to the request, which reports it
                future.set_exception(e)
            else:
                future.set_result(result)
            with self._lock:
                self._running -= 1
                self._done += 1
                self._seconds += (time.perf_counter() - t0 - self._seconds) / self._done

    def _fail(self, message: str) -> None:
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = message
        self._ready.set()
        if first:
            for fn in self._on_failure:
                fn(message)
