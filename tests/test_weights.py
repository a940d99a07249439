"""Checkpoint safety, strict loading, format round trips and the download cache."""

import hashlib
import http.server
import pickle
import threading
from pathlib import Path

import pytest
import torch

import videozoo
from videozoo.models.registry import get_spec
from videozoo.weights import hub
from videozoo.weights.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from videozoo.weights.meta import CheckpointMeta
from videozoo.weights.safe_pickle import UnsafePickleError
from videozoo.weights.sources import WeightSource

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
    path = videozoo.save_model(model, tmp_path / "m.safetensors")
    tuned = videozoo.create_model(SMALL, weights=str(path), num_classes=5)
    assert tuned.num_classes == 5 and tuned.class_names is None
    torch.testing.assert_close(
        tuned.state_dict()["layer4.1.conv2.0.weight"], model.state_dict()["layer4.1.conv2.0.weight"]
    )
    same = videozoo.create_model(SMALL, weights=str(path), num_classes=400)
    assert same.class_names[0] == "abseiling"


def test_class_names_and_model_name_travel_with_checkpoints(tmp_path):
    model = videozoo.create_model(SMALL, num_classes=3)
    names = ["left", "right", "up"]
    for suffix in (".pth", ".safetensors"):
        meta = CheckpointMeta(model=SMALL, class_names=names, num_classes=3)
        path = save_checkpoint(tmp_path / f"m{suffix}", model.state_dict(), meta=meta)
        again = videozoo.create_model(SMALL, weights=str(path))
        assert again.class_names == names
        with pytest.raises(CheckpointError, match="not 'r3d_18'"):
            videozoo.create_model("r3d_18", weights=str(path))


# -- the checkpoint record ----------------------------------------------------------------------


def _small_i3d():
    """A fine-tuned-like model: width 8, a 4-frame 32-pixel clip, two classes."""
    import dataclasses

    spec = get_spec("i3d_r50")
    model = spec.build(num_classes=2, width=8, num_frames=4, crop_size=32)
    model.model_name, model.class_names = "i3d_r50", ["a", "b"]
    model.input_config = dataclasses.replace(spec.input, num_frames=4, crop_size=32, train_crop_size=32, short_side=32)
    return model.eval()


def test_record_round_trips_and_rebuilds_the_model(tmp_path):
    from videozoo.models.factory import checkpoint_meta

    model = _small_i3d()
    meta = checkpoint_meta(model, training={"epochs": 3, "arch": {"width": 8}})
    assert CheckpointMeta.from_dict(meta.to_dict(), source="x") == meta
    assert CheckpointMeta.from_json(meta.to_json(), source="x") == meta
    assert meta.videozoo_version == videozoo.__version__ and meta.input.mean == (0.45, 0.45, 0.45)
    x = torch.randn(1, 3, 4, 32, 32)
    for suffix in (".pth", ".safetensors"):
        path = videozoo.save_model(model, tmp_path / f"m{suffix}", training=meta.training)
        assert read_checkpoint(path).meta == meta
        again = videozoo.create_model("i3d_r50", weights=path)
        assert again.arch == model.arch and again.input_config == model.input_config and again.class_names == ["a", "b"]
        with torch.inference_mode():
            torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_files_written_before_the_record_still_load(tmp_path):
    import dataclasses
    import json

    from safetensors.torch import save_file

    model = _small_i3d()
    state = model.state_dict()
    # As training wrote model.pth: arch overrides and the clip as lists, the settings under "config".
    old = tmp_path / "old.pth"
    plain_input = json.loads(json.dumps(dataclasses.asdict(model.input_config)))
    torch.save(
        {
            "videozoo": 1,
            "model": "i3d_r50",
            "state_dict": state,
            "class_names": ["a", "b"],
            "arch": {"width": 8, "num_frames": 4, "crop_size": 32},
            "input": plain_input,
            "config": {"epochs": 2},
            "metrics": {"val_acc": 50.0},
        },
        old,
    )
    ckpt = read_checkpoint(old)
    assert ckpt.meta.training == {"epochs": 2} and ckpt.extra == {"metrics": {"val_acc": 50.0}}
    assert ckpt.meta.videozoo_version is None
    again = videozoo.create_model("i3d_r50", weights=old)
    assert again.arch["width"] == 8 and again.input_config == model.input_config and again.class_names == ["a", "b"]
    # Safetensors with the model name and class names only: the registry's architecture.
    full = videozoo.create_model("x3d_xs", num_classes=2)
    old_st = tmp_path / "old.safetensors"
    save_file(full.state_dict(), str(old_st), metadata={"format": "pt", "model": "x3d_xs", "class_names": '["a", "b"]'})
    again = videozoo.create_model("x3d_xs", weights=old_st)
    assert again.class_names == ["a", "b"] and again.input_config == get_spec("x3d_xs").input


def _broken(meta: dict, field: str, value) -> dict:
    meta = {**meta, "input": dict(meta["input"])}
    if field.startswith("input."):
        key = field[len("input.") :]
        if value is _DROP:
            meta["input"].pop(key)
        else:
            meta["input"][key] = value
    else:
        meta[field] = value
    return meta


_DROP = object()
BROKEN_RECORDS = [
    # (field, value, words the error must hold besides the file name)
    ("record", 99, "videozoo_meta.record: layout 99 was written by a newer videozoo"),
    ("record", "one", "videozoo_meta.record"),
    ("model", 3, "videozoo_meta.model"),
    ("model", "", "videozoo_meta.model"),
    ("arch", [8], "videozoo_meta.arch"),
    ("input", "clip", "videozoo_meta.input"),
    ("input.num_frames", "eight", "videozoo_meta.input.num_frames: expected an integer"),
    ("input.mean", [0.5, 0.5], "videozoo_meta.input.mean"),
    ("input.resize", "big", "videozoo_meta.input.resize"),
    ("input.crop_size", _DROP, "missing field(s) crop_size"),
    ("input.zoom", 2, "unknown field(s) zoom"),
    ("class_names", [1, 2], "videozoo_meta.class_names"),
    ("class_names", ["a", "b", "c"], "videozoo_meta.class_names: 3 names for 2 classes"),
    ("num_classes", 0, "videozoo_meta.num_classes"),
    ("training", "fast", "videozoo_meta.training"),
    ("videozoo_version", 1, "videozoo_meta.videozoo_version"),
    ("colour", "red", "unknown field(s) colour"),
]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize(
    "field,value,words",
    BROKEN_RECORDS,
    ids=[f"{f}={'(dropped)' if v is _DROP else repr(v)}" for f, v, _ in BROKEN_RECORDS],
)
def test_a_broken_record_names_the_file_and_field(tmp_path, suffix, field, value, words):
    import json

    from safetensors.torch import save_file

    from videozoo.models.factory import checkpoint_meta

    record = _broken(checkpoint_meta(_small_i3d()).to_dict(), field, value)
    state = {"w": torch.zeros(2)}
    path = tmp_path / f"m{suffix}"
    if suffix == ".pth":
        torch.save({"videozoo": 2, "state_dict": state, "videozoo_meta": record}, path)
    else:
        save_file(state, str(path), metadata={"format": "pt", "videozoo_meta": json.dumps(record)})
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and words in str(e.value)


@pytest.mark.parametrize(
    "change,words",
    [
        ({"num_classes": 3, "class_names": None}, "videozoo_meta.num_classes is 3, but the classifier has 2 outputs"),
        ({"arch": {"width": 8, "wings": 2}}, "videozoo_meta.arch: PooledResNet3d (i3d_r50) takes no argument(s) wings"),
        ({"model": "slow_r50"}, "holds weights of 'slow_r50', not 'i3d_r50'"),
    ],
)
def test_a_record_that_does_not_fit_the_weights_is_refused(tmp_path, change, words):
    import dataclasses

    from videozoo.models.factory import checkpoint_meta

    model = _small_i3d()
    meta = dataclasses.replace(checkpoint_meta(model), **change)
    path = save_checkpoint(tmp_path / "m.pth", model.state_dict(), meta=meta)
    with pytest.raises(CheckpointError) as e:
        videozoo.create_model("i3d_r50", weights=path)
    assert str(path) in str(e.value) and words in str(e.value)


def test_safetensors_record_that_is_not_json_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt", "videozoo_meta": "{not json"})
    with pytest.raises(CheckpointError, match="videozoo_meta is not valid JSON") as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)


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
    monkeypatch.delenv("VIDEOZOO_MIRROR", raising=False)
    monkeypatch.setenv("VIDEOZOO_DOWNLOAD_BACKOFF_SEC", "0.01")  # retries without waiting
    return tmp_path / "home"


def _serve_checkpoint(server, tmp_path, name="/w/r3d.pth", license="Apache-2.0"):
    base, handler = server
    path = tmp_path / "src.pth"
    torch.save(videozoo.create_model(SMALL).state_dict(), path)
    body = path.read_bytes()
    handler.files[name] = body
    return WeightSource(
        url=base + name, format="torchvision", license=license, sha256=hashlib.sha256(body).hexdigest(), size=len(body)
    ), body


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
    source = WeightSource(url="http://127.0.0.1:9/nothing/here.pyth", format="pyth", license="Apache-2.0")
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


def test_a_non_commercial_licence_is_said_once_on_the_first_download(server, home, tmp_path, capsys):
    source, body = _serve_checkpoint(server, tmp_path, license="CC-BY-NC-4.0")
    assert hub.fetch(source, progress=False).read_bytes() == body
    err = capsys.readouterr().err
    assert err.count("does not allow commercial use") == 1
    assert "r3d.pth is published under CC-BY-NC-4.0" in err and "https://spdx.org/licenses/CC-BY-NC-4.0.html" in err
    hub.fetch(source, progress=False)  # cached: nothing said again
    assert "commercial" not in capsys.readouterr().err
    free, _ = _serve_checkpoint(server, tmp_path, name="/w/free.pth", license="Apache-2.0")
    hub.fetch(free, progress=False)
    assert "commercial" not in capsys.readouterr().err
