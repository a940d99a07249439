"""Weight downloads against a misbehaving server on 127.0.0.1: every bad body or connection ends in
one clear error within a bounded time with nothing cached; transient failures are retried; a
mirror replaces the host; non-finite weights are refused by name."""

from __future__ import annotations

import http.server
import io
import socket
import struct
import threading
import time

import pytest
import torch

from videozoo.weights import hub
from videozoo.weights.checkpoint import CheckpointError, read_checkpoint
from videozoo.weights.sources import WeightSource


def _checkpoint_bytes(**tensors) -> bytes:
    buf = io.BytesIO()
    torch.save(tensors or {"w": torch.arange(2000, dtype=torch.float32)}, buf)
    return buf.getvalue()


GOOD = _checkpoint_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers by path: /<behaviour>/w.pth. `hits` counts requests per path."""

    hits: dict = {}

    def do_GET(self):
        behaviour = self.path.strip("/").split("/")[0]
        n = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        getattr(self, "_" + behaviour)(n)

    def _send(self, body: bytes, *, kind="application/octet-stream", length: int | None = -1, code=200):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        self.end_headers()
        self.wfile.write(body)

    def _good(self, n):
        self._send(GOOD)

    def _html(self, n):
        self._send(b"<!DOCTYPE html><html><body>Please log in</body></html>", kind="text/html")

    def _json(self, n):  # a JSON error body sent as if it were the file
        self._send(b'{"error": "quota exceeded"}')

    def _garbage(self, n):
        self._send(bytes(range(256)) * 20)

    def _cut_without_length(self, n):
        self._send(GOOD[: len(GOOD) // 2], length=None)

    def _cut(self, n):
        self._send(GOOD[: len(GOOD) // 2], length=len(GOOD))

    def _nan(self, n):
        self._send(_checkpoint_bytes(w=torch.tensor([1.0, float("nan")])))

    def _stall(self, n):
        self._send(GOOD[:100], length=len(GOOD))
        self.wfile.flush()
        time.sleep(3)

    def _trickle(self, n):
        self.send_response(200)
        self.send_header("Content-Length", str(len(GOOD)))
        self.end_headers()
        for i in range(0, len(GOOD), 10):
            self.wfile.write(GOOD[i : i + 10])
            self.wfile.flush()
            time.sleep(0.05)

    def _reset_once(self, n):
        if n == 1:
            # An abrupt close (RST) before any answer.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self._send(GOOD)

    def _unavailable_once(self, n):
        if n == 1:
            self.send_error(503)
            return
        self._send(GOOD)

    def _always_500(self, n):
        self.send_error(500)

    def _missing(self, n):
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.hits = {}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads, srv.block_on_close = True, False
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOZOO_HOME", str(tmp_path / "home"))
    for var in ("VIDEOZOO_OFFLINE", "VIDEOZOO_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VIDEOZOO_DOWNLOAD_STALL_SEC", "0.5")
    monkeypatch.setenv("VIDEOZOO_DOWNLOAD_MIN_RATE", "1000")
    monkeypatch.setenv("VIDEOZOO_DOWNLOAD_RATE_WINDOW_SEC", "0.5")
    monkeypatch.setenv("VIDEOZOO_DOWNLOAD_RETRIES", "2")
    monkeypatch.setenv("VIDEOZOO_DOWNLOAD_BACKOFF_SEC", "0.05")
    return tmp_path / "home"


def _nothing_cached(home):
    folder = home / "checkpoints"
    return not folder.exists() or not list(folder.iterdir())


# (behaviour, the error, words in its message, requests the client makes)
REFUSED = [
    ("html", hub.IntegrityError, "text/html page, not a checkpoint", 1),
    ("json", hub.IntegrityError, "HTML or JSON page, not a checkpoint", 1),
    ("garbage", hub.IntegrityError, "not a loadable checkpoint", 1),
    ("cut_without_length", hub.IntegrityError, "not a loadable checkpoint", 1),
    ("cut", hub.IntegrityError, "truncated download", 3),
    ("nan", hub.IntegrityError, "not finite: w (1 NaN", 1),
    ("stall", hub.WeightsUnavailableError, "no byte for 0.5 s", 1),
    ("trickle", hub.WeightsUnavailableError, "below the floor of 1000", 1),
    ("always_500", hub.WeightsUnavailableError, "HTTP 500", 3),
    ("missing", hub.WeightsUnavailableError, "HTTP 404", 1),
]


@pytest.mark.parametrize("behaviour, error, words, requests", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_bad_download_ends_in_one_error_with_nothing_cached(server, home, behaviour, error, words, requests):
    source = WeightSource(url=f"{server}/{behaviour}/w.pth", format="torchvision", license="MIT")  # no hash published
    t0 = time.monotonic()
    with pytest.raises(error) as e:
        hub.fetch(source, progress=False)
    assert time.monotonic() - t0 < 5
    assert words in str(e.value) and source.url in str(e.value)
    assert _nothing_cached(home)
    assert _Handler.hits[f"/{behaviour}/w.pth"] == requests


@pytest.mark.parametrize("behaviour", ["reset_once", "unavailable_once"])
def test_transient_failures_are_retried(server, home, behaviour, capsys):
    source = WeightSource(url=f"{server}/{behaviour}/w.pth", format="torchvision", license="MIT")
    path = hub.fetch(source, progress=False)
    assert path.read_bytes() == GOOD and _Handler.hits[f"/{behaviour}/w.pth"] == 2
    assert "retrying" in capsys.readouterr().err


def test_mirror_replaces_scheme_and_host_and_keeps_the_path(server, home, monkeypatch):
    source = WeightSource(url="https://weights.example.invalid/good/w.pth", format="torchvision", license="MIT")
    monkeypatch.setenv("VIDEOZOO_MIRROR", server + "/")
    assert hub.fetch(source, progress=False).read_bytes() == GOOD
    assert _Handler.hits == {"/good/w.pth": 1}
    monkeypatch.setenv("VIDEOZOO_MIRROR", "not a url")
    (home / "checkpoints" / "w.pth").unlink()
    with pytest.raises(ValueError, match="VIDEOZOO_MIRROR"):
        hub.fetch(source, progress=False)


def test_bad_download_settings_name_the_variable(server, home, monkeypatch):
    monkeypatch.setenv("VIDEOZOO_DOWNLOAD_STALL_SEC", "soon")
    with pytest.raises(ValueError, match="VIDEOZOO_DOWNLOAD_STALL_SEC='soon'"):
        hub.fetch(WeightSource(url=f"{server}/good/w.pth", format="torchvision", license="MIT"), progress=False)


@pytest.mark.parametrize(
    "value, kind",
    [(float("nan"), "1 NaN, 0 infinite"), (float("inf"), "0 NaN, 1 infinite"), (float("-inf"), "0 NaN, 1 infinite")],
)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, value, kind, suffix):
    bad = torch.ones(3, 4)
    bad[1, 2] = value
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save({"fine": torch.zeros(2), "blocks.0.conv.weight": bad}, path)
    else:
        from safetensors.torch import save_file

        save_file({"fine": torch.zeros(2), "blocks.0.conv.weight": bad}, str(path))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and f"blocks.0.conv.weight ({kind} of 12 values)" in str(e.value)
    assert "fine" not in str(e.value)
