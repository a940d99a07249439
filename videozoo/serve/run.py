"""Running the server: uvicorn on one socket, graceful stop on SIGTERM / Ctrl-C, exit status.

On SIGTERM or Ctrl-C the server stops accepting connections, fails the requests still queued with
503 ("shutting down"), lets the running ones finish (up to ``shutdown_timeout`` seconds, then cancels
them), removes its temporary folder and returns 0. A model that fails to load stops it with 1.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

import uvicorn

from videozoo.serve.app import create_app
from videozoo.serve.config import ServeConfig
from videozoo.serve.pool import InferencePool


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, pool: InferencePool, on_started):
        super().__init__(config)
        self.pool, self.on_started = pool, on_started

    def handle_exit(self, sig, frame) -> None:
        self.pool.closing = True  # a plain flag: safe inside a signal handler
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets=None) -> None:
        # Queued requests are answered "shutting down" at once; running ones get the grace period.
        self.pool.fail_queued()
        await super().shutdown(sockets=sockets)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.on_started()


def _say(message: str) -> None:
    print(f"videozoo serve: {message}", file=sys.stderr, flush=True)


def serve(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shutdown_timeout: float = 5.0,
    log_level: str = "info",
    abandon_running: bool = False,
) -> int:
    """Serve until SIGTERM / Ctrl-C (returns 0) or a model fails to load (returns 1).

    abandon_running: when a computation is still running after the grace period, end the process
    at once with the status (``os._exit``) instead of returning: a forward pass cannot be
    interrupted, and an interpreter cannot shut down under one. For a process that only serves
    (the command line).
    """
    failure: list[str] = []
    server: _Server | None = None

    def on_failure(message: str) -> None:
        failure.append(message)
        if server is not None:
            server.should_exit = True

    pool = InferencePool(_builder(config), workers=config.workers, max_queue=config.max_queue)
    app = create_app(config, pool=pool, on_failure=on_failure)
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{bound_host if ':' not in bound_host else f'[{bound_host}]'}:{bound_port}"

    def on_started() -> None:
        names = ", ".join(m.name for m in config.models)
        _say(f"listening on {url} (page: {url}/, API docs: {url}/docs); loading {names}")

        def announce_ready() -> None:
            if pool.wait_ready():
                _say(f"ready: {names} ({config.workers} worker(s), queue {config.max_queue})")

        threading.Thread(target=announce_ready, daemon=True).start()

    uconfig = uvicorn.Config(
        app,
        log_level=log_level,
        timeout_graceful_shutdown=shutdown_timeout,
        lifespan="on",
        access_log=log_level in ("debug", "trace", "info"),
    )
    server = _Server(uconfig, pool, on_started)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # uvicorn re-raises the signal it stopped on once it is done; these make that a clean exit 0.
        previous = {s: signal.signal(s, _ignore) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    code = 0
    if failure:
        _say(f"error: a model failed to load: {failure[0]}")
        code = 1
    else:
        _say("stopped" if not pool.running else f"stopped ({pool.running} running computation(s) abandoned)")
    if abandon_running and pool.running:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _builder(config: ServeConfig):
    from videozoo.serve.app import build_engines

    return lambda: build_engines(config)


def _ignore(signum, frame) -> None:
    pass


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock
