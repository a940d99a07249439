"""The video-nonlocal-net I3D: Caffe2 pickles of either numpy era, blob names, strict blob checks."""

import pickle

import numpy as np
import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, deterministic_state, load_fixture
from videozoo.models.factory import model_from_checkpoint
from videozoo.models.i3d_caffe2 import I3DResNet, caffe2_blob_name, from_caffe2_blobs, to_caffe2_blobs
from videozoo.models.registry import get_spec
from videozoo.weights.checkpoint import Checkpoint, CheckpointError

if not FIXTURES.is_dir():
    pytest.skip(f"reference fixtures not found at {FIXTURES}", allow_module_level=True)

BASELINE = "i3d_r50_32x2"


@pytest.mark.xdist_group("caffe2_i3d")  # the 350 MB pickles, written once
@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_caffe2_pickle_of_either_numpy_loads(numpy_module, official_checkpoint):
    fx = load_fixture(BASELINE)
    path = official_checkpoint(BASELINE, numpy_module)
    assert numpy_module.encode() + b"\n" in path.read_bytes()
    model = videozoo.create_model(BASELINE, weights=str(path))
    # Every blob landed where it belongs and nothing else was taken (momentum, lr, model_iter).
    blobs = to_caffe2_blobs(model.state_dict())
    expected = deterministic_state(fx)
    assert blobs.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(blobs[name], value), name


@pytest.mark.parametrize("name,non_local", [("i3d_r50_32x2", False), ("i3d_r50_nl_32x2", True)])
def test_blob_names_round_trip(name, non_local):
    with torch.device("meta"):
        state = I3DResNet(non_local=non_local).state_dict()
    blobs = to_caffe2_blobs(state)
    # The names are exactly the official file's, in one-to-one correspondence with the state dict.
    assert set(blobs) == {key for key, _, _ in load_fixture(name)["state_dict"]}
    back = from_caffe2_blobs(blobs)
    assert set(back) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert all(caffe2_blob_name(k) == b for k, b in zip(back, blobs, strict=True))


def _write_caffe2_layout(path, names):
    # The official file's layout with one-element blobs: the names are checked before any shape.
    blobs = {}
    for name in names:
        blobs[name] = np.zeros(1, np.float32)
        blobs[name + "_momentum"] = np.zeros(1, np.float32)
    blobs["lr"] = np.float32(0.01)
    blobs["model_iter"] = np.int64(400000)
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    return path


def _official_names():
    return [key for key, _, _ in load_fixture(BASELINE)["state_dict"]]


def test_missing_blob_is_named(tmp_path):
    names = [n for n in _official_names() if n != "res4_2_branch2b_bn_riv"]
    path = _write_caffe2_layout(tmp_path / "a.pkl", names)
    with pytest.raises(CheckpointError, match="missing blobs: res4_2_branch2b_bn_riv") as e:
        videozoo.create_model(BASELINE, weights=str(path))
    assert str(path) in str(e.value)


def test_unknown_blob_is_named(tmp_path):
    path = _write_caffe2_layout(tmp_path / "a.pkl", _official_names() + ["res4_2_branch2d_w"])
    with pytest.raises(CheckpointError, match="unexpected blobs: res4_2_branch2d_w"):
        videozoo.create_model(BASELINE, weights=str(path))


def test_non_local_file_does_not_load_into_the_baseline():
    with torch.device("meta"):
        nl_state = I3DResNet(non_local=True).state_dict()
    # Full-size shapes without the memory: every tensor is a broadcast zero.
    blobs = {b: torch.zeros(()).expand(v.shape) for k, v in nl_state.items() if (b := caffe2_blob_name(k))}
    ckpt = Checkpoint("caffe2", blobs, "nl.pkl")
    with pytest.raises(CheckpointError, match=r"unexpected keys:[\s\S]*layer2\.1\.nl\.theta\.weight"):
        model_from_checkpoint(get_spec(BASELINE), ckpt)


def test_pytorch_resnet3d_converted_file_loads(tmp_path):
    # pytorch-resnet3d's convert_weights.py saves a bare state dict in this model's names, without
    # BatchNorm step counters.
    model = videozoo.create_model(BASELINE)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, tmp_path / "i3d_r50_kinetics.pth")
    loaded = videozoo.create_model(BASELINE, weights=str(tmp_path / "i3d_r50_kinetics.pth"))
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_head_pools_the_whole_map_at_any_crop():
    # As pytorch-resnet3d's port: global average pooling, one head position whatever the crop.
    model = I3DResNet().eval()
    with torch.no_grad():
        assert model.forward_positions(torch.randn(1, 3, 8, 64, 64)).shape == (1, 1, 2048)
        assert model.forward_positions(torch.randn(1, 3, 8, 96, 128)).shape == (1, 1, 2048)
