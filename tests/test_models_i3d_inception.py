"""Inception I3D (i3d_inception_rgb): "same" padding, the published file's layout, the engine's features."""

import math

import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, deterministic_state, load_fixture
from videozoo.models.i3d_inception import same_padding
from videozoo.weights.checkpoint import CheckpointError

STEM = "inception/i3d_inception_rgb"


@pytest.mark.parametrize("size", range(1, 20))
@pytest.mark.parametrize(("kernel", "stride"), [(7, 2), (3, 2), (2, 2), (3, 1), (1, 1), (1, 2)])
def test_same_padding_is_tensorflows(size, kernel, stride):
    # TensorFlow: out = ceil(size / stride); total = max((out - 1) * stride + kernel - size, 0).
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    assert same_padding(size, kernel, stride) == (total // 2, total - total // 2)


@pytest.fixture(scope="module")
def official_state():
    if not (FIXTURES / f"{STEM}.json").is_file():
        pytest.skip(f"reference fixture {STEM} not found under {FIXTURES}")
    return deterministic_state(load_fixture(STEM))


def test_published_file_loads_with_or_without_batchnorm_counters(official_state, tmp_path):
    legacy = {k: v for k, v in official_state.items() if not k.endswith("num_batches_tracked")}
    assert len(official_state) - len(legacy) == 57
    torch.save(legacy, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(official_state, tmp_path / "modern.pt")
    a = videozoo.create_model("i3d_inception_rgb", weights=str(tmp_path / "legacy.pt")).state_dict()
    b = videozoo.create_model("i3d_inception_rgb", weights=str(tmp_path / "modern.pt")).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["logits.conv3d.weight"], official_state["logits.conv3d.weight"].flatten(1))


def test_a_missing_tensor_is_named(official_state, tmp_path):
    partial = {k: v for k, v in official_state.items() if k != "Mixed_4c.b2b.bn.running_var"}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"Mixed_4c\.b2b\.bn\.running_var"):
        videozoo.create_model("i3d_inception_rgb", weights=str(tmp_path / "partial.pt"))


def test_engine_features_equal_the_models(official_state, tmp_path):
    # The engine folds BatchNorm and fuses ReLUs: the features must not move.
    torch.save(official_state, tmp_path / "w.pt")
    model = videozoo.create_model("i3d_inception_rgb", weights=str(tmp_path / "w.pt"))
    engine = videozoo.Engine(
        videozoo.create_model("i3d_inception_rgb", weights=str(tmp_path / "w.pt")), precision="fp32"
    )
    x = torch.randn(2, 3, 24, 112, 112, generator=torch.Generator().manual_seed(1))  # (B, C, T, H, W)
    with torch.inference_mode():
        want = model.forward_features(x)
    got = engine.forward(x, "features")
    assert got.shape == (2, 1024)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
