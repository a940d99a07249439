"""Checkpoint safety, strict loading, format round trips and the download cache."""
import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch

import videozoo
from videozoo.weights.sources import WeightSource
from videozoo.models.registry import get_spec
from videozoo.weights import hub
from videozoo.weights.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from videozoo.weights.safe_pickle import UnsafePickleError

SMALL = "mc3_18"  # the smallest full model with a plain torchvision state dict (11.7M parameters)


class _RunsCode:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_caffe2_style_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"blobs": {"conv1_w": _RunsCode(marker)}}, protocol=2))
    with pytest.raises(UnsafePickleError) as e:
        videozoo.create_model("i3d_r50_32x2", weights=str(bad))
    assert str(bad) in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()


def test_torch_file_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    torch.save({"model_state": {"x": torch.zeros(1)}, "payload": _RunsCode(marker)}, bad)
    with pytest.raises(UnsafePickleError) as e:
        read_checkpoint(bad)
    assert str(bad) in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"\x80\x02}q\x00(X"])
def test_unreadable_files_name_the_file(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises((CheckpointError, ValueError)) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)


def test_strict_loading_lists_every_problem(tmp_path):
    state = videozoo.create_model(SMALL).state_dict()
    state.pop("layer1.0.conv1.0.weight")
    state["layer9.extra.weight"] = torch.zeros(3)
    state["layer2.0.conv1.1.weight"] = torch.zeros(7)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        videozoo.create_model(SMALL, weights=str(path))
    msg = str(e.value)
    for key in ("layer1.0.conv1.0.weight", "layer9.extra.weight", "layer2.0.conv1.1.weight"):
        assert key in msg
    assert "missing" in msg and "unexpected" in msg and "shape" in msg and str(path) in msg


def test_num_classes_replaces_head_and_keeps_backbone(tmp_path):
    model = videozoo.create_model(SMALL)
    path = save_checkpoint(tmp_path / "m.safetensors", model.state_dict(), model_name=SMALL)
    tuned = videozoo.create_model(SMALL, weights=str(path), num_classes=5)
    assert tuned.num_classes == 5 and tuned.class_names is None
    torch.testing.assert_close(tuned.state_dict()["layer4.1.conv2.0.weight"], model.state_dict()["layer4.1.conv2.0.weight"])
    same = videozoo.create_model(SMALL, weights=str(path), num_classes=400)
    assert same.class_names[0] == "abseiling"


def test_class_names_and_model_name_travel_with_checkpoints(tmp_path):
    model = videozoo.create_model(SMALL, num_classes=3)
    names = ["left", "right", "up"]
    for suffix in (".pth", ".safetensors"):
        path = save_checkpoint(tmp_path / f"m{suffix}", model.state_dict(), model_name=SMALL, class_names=names)
        again = videozoo.create_model(SMALL, weights=str(path))
        assert again.class_names == names
        with pytest.raises(CheckpointError, match="not 'r3d_18'"):
            videozoo.create_model("r3d_18", weights=str(path))


# -- the download cache, against a real HTTP server on 127.0.0.1 ------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    truncate: set = set()

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path in self.truncate else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.truncate = {}, set()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Handler
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VIDEOZOO_OFFLINE", raising=False)
    return tmp_path / "home"


def _serve_checkpoint(server, tmp_path, name="/w/r3d.pth"):
    base, handler = server
    path = tmp_path / "src.pth"
    torch.save(videozoo.create_model(SMALL).state_dict(), path)
    body = path.read_bytes()
    handler.files[name] = body
    return WeightSource(url=base + name, format="torchvision", sha256=hashlib.sha256(body).hexdigest(), size=len(body)), body


def test_download_verify_and_load_through_create_model(server, home, tmp_path, monkeypatch):
    source, body = _serve_checkpoint(server, tmp_path)
    from videozoo.models import spec

    monkeypatch.setitem(spec.SPECS, SMALL, get_spec(SMALL).replace(weights={"kinetics400": source}))
    model = videozoo.create_model(SMALL, weights="kinetics400", progress=False)
    cached = home / "checkpoints" / "r3d.pth"
    assert cached.read_bytes() == body and model.class_names[0] == "abseiling"
    assert not [p for p in cached.parent.iterdir() if ".part" in p.name]
    # Cached now: works with the server gone and offline mode on.
    server[1].files.clear()
    monkeypatch.setenv("VIDEOZOO_OFFLINE", "1")
    videozoo.create_model(SMALL, weights="kinetics400")


def test_truncated_download_is_detected_and_never_used(server, home, tmp_path):
    source, _ = _serve_checkpoint(server, tmp_path)
    server[1].truncate.add("/w/r3d.pth")
    with pytest.raises(hub.IntegrityError, match="truncated download"):
        hub.fetch(source, progress=False)
    assert not (home / "checkpoints" / "r3d.pth").exists()
    assert not list((home / "checkpoints").glob(".*part*"))


def test_corrupted_download_is_detected_and_never_used(server, home, tmp_path):
    source, body = _serve_checkpoint(server, tmp_path)
    server[1].files["/w/r3d.pth"] = body[:-10] + b"0123456789"
    with pytest.raises(hub.IntegrityError, match="sha256"):
        hub.fetch(source, progress=False)
    assert not (home / "checkpoints" / "r3d.pth").exists()


def test_corrupted_cached_file_is_detected(server, home, tmp_path):
    source, body = _serve_checkpoint(server, tmp_path)
    dest = hub.cache_path(source)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(body[:-10] + b"0123456789")
    with pytest.raises(hub.IntegrityError, match=str(dest)):
        hub.fetch(source, progress=False)


def test_offline_error_names_url_and_destination(home, monkeypatch):
    source = WeightSource(url="http://127.0.0.1:9/nothing/here.pyth", format="pyth")
    with pytest.raises(hub.WeightsUnavailableError) as e:
        hub.fetch(source, progress=False)
    msg = str(e.value)
    assert source.url in msg and str(home / "checkpoints" / "here.pyth") in msg
    monkeypatch.setenv("VIDEOZOO_OFFLINE", "1")
    with pytest.raises(hub.WeightsUnavailableError, match="offline"):
        hub.fetch(source, progress=False)
    # A file placed by hand at the named path is used.
    dest = home / "checkpoints" / "here.pyth"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"placed by hand")
    assert hub.fetch(source) == dest


def test_unknown_weights_name_is_an_error():
    with pytest.raises(ValueError, match="unknown weights"):
        videozoo.create_model(SMALL, weights="imagenet")
