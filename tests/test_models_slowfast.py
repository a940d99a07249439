"""PySlowFast checkpoints of the pytorchvideo ResNet and SlowFast networks load into the same models.

The fixture's deterministic weights are written once with pytorchvideo's names (.pyth) and once
renamed the way PySlowFast's `video_model_builder` names the same layers; both files must give
the same model and the same output.
"""

import re

import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, deterministic_state, load_fixture
from videozoo.weights.checkpoint import CheckpointError, read_checkpoint

if not FIXTURES.is_dir():
    pytest.skip(f"reference fixtures not found at {FIXTURES}", allow_module_level=True)

# Inside a residual block: pytorchvideo part -> PySlowFast part.
BLOCK_PARTS = {
    "branch1_conv": "branch1",
    "branch1_norm": "branch1_bn",
    "branch2.conv_a": "branch2.a",
    "branch2.norm_a": "branch2.a_bn",
    "branch2.conv_b": "branch2.b",
    "branch2.norm_b": "branch2.b_bn",
    "branch2.conv_c": "branch2.c",
    "branch2.norm_c": "branch2.c_bn",
}
_BLOCK = re.compile(r"(branch1_conv|branch1_norm|branch2\.(?:conv|norm)_[abc])\.(\w+)")


def _block(rest: str) -> str:
    m = _BLOCK.fullmatch(rest)
    assert m, rest
    return f"{BLOCK_PARTS[m[1]]}.{m[2]}"


def resnet_to_pyslowfast(key: str, *, pooled: bool) -> str:
    """pytorchvideo ResNet name -> PySlowFast `ResNet` name (s1 stem, s2..s5 stages, head)."""
    if m := re.fullmatch(r"blocks\.0\.(conv|norm)\.(\w+)", key):
        return f"s1.pathway0_stem.{'bn' if m[1] == 'norm' else 'conv'}.{m[2]}"
    if m := re.fullmatch(r"blocks\.(\d)\.res_blocks\.(\d+)\.(.+)", key):
        b = int(m[1])
        # The res2 max pool of C2D/I3D is blocks.2 in pytorchvideo and has no name in PySlowFast.
        stage = b + 1 if not pooled or b == 1 else b
        return f"s{stage}.pathway0_res{m[2]}.{_block(m[3])}"
    if m := re.fullmatch(r"blocks\.\d\.proj\.(weight|bias)", key):
        return f"head.projection.{m[1]}"
    raise AssertionError(key)


def slowfast_to_pyslowfast(key: str) -> str:
    """pytorchvideo SlowFast name -> PySlowFast `SlowFast` name."""
    if m := re.fullmatch(r"blocks\.0\.multipathway_blocks\.(\d)\.(conv|norm)\.(\w+)", key):
        return f"s1.pathway{m[1]}_stem.{'bn' if m[2] == 'norm' else 'conv'}.{m[3]}"
    if m := re.fullmatch(r"blocks\.(\d)\.multipathway_fusion\.(conv_fast_to_slow|norm)\.(\w+)", key):
        return f"s{int(m[1]) + 1}_fuse.{'bn' if m[2] == 'norm' else 'conv_f2s'}.{m[3]}"
    if m := re.fullmatch(r"blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.(.+)", key):
        return f"s{int(m[1]) + 1}.pathway{m[2]}_res{m[3]}.{_block(m[4])}"
    if m := re.fullmatch(r"blocks\.6\.proj\.(weight|bias)", key):
        return f"head.projection.{m[1]}"
    raise AssertionError(key)


def _save_pyslowfast(path, state):
    # As PySlowFast's checkpoint.save_checkpoint writes them.
    torch.save({"epoch": 196, "model_state": state, "optimizer_state": {}, "cfg": "MODEL:\n  ARCH: slow\n"}, path)
    return path


CASES = {
    "slow_r50": lambda k: resnet_to_pyslowfast(k, pooled=False),
    "c2d_r50": lambda k: resnet_to_pyslowfast(k, pooled=True),
    "i3d_r50": lambda k: resnet_to_pyslowfast(k, pooled=True),
    "slowfast_r50": slowfast_to_pyslowfast,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pyslowfast_checkpoint_matches_pyth(name, tmp_path):
    fx = load_fixture(name)
    rename = CASES[name]
    official = deterministic_state(fx)
    pyth = tmp_path / "official.pyth"
    torch.save({"model_state": official}, pyth)  # the pytorchvideo model-zoo layout
    state = {rename(k): v for k, v in official.items()}
    assert len(state) == len(official)
    pysf = _save_pyslowfast(tmp_path / "pyslowfast.pyth", state)
    assert read_checkpoint(pysf).format == "pyslowfast"

    ref_model = videozoo.create_model(name, weights=str(pyth))
    model = videozoo.create_model(name, weights=str(pysf))
    ref_sd, sd = ref_model.state_dict(), model.state_dict()
    assert sd.keys() == ref_sd.keys()
    assert all(torch.equal(sd[k], ref_sd[k]) for k in sd)

    g = torch.Generator().manual_seed(0)
    fast = torch.randn(1, 3, 8, 32, 32, generator=g)
    x = [fast[:, :, ::4], fast] if name.startswith("slowfast") else fast
    with torch.inference_mode():
        assert torch.equal(model(x), ref_model(x))


def test_pyslowfast_without_batch_counters_loads(tmp_path):
    fx = load_fixture("slow_r50")
    state = {
        resnet_to_pyslowfast(k, pooled=False): v
        for k, v in deterministic_state(fx).items()
        if not k.endswith("num_batches_tracked")
    }
    model = videozoo.create_model("slow_r50", weights=str(_save_pyslowfast(tmp_path / "c.pyth", state)))
    assert model.num_classes == 400


def test_pyslowfast_unknown_layers_are_named():
    from videozoo.models.slowfast import SlowFast

    state = {
        "s1_fuse.conv_f2s.weight": torch.zeros(16, 8, 7, 1, 1),
        # A non-local block (SLOWFAST_NLN configs) has no counterpart in these models.
        "s4.pathway0_nonlocal2.conv_theta.weight": torch.zeros(512, 1024, 1, 1, 1),
    }
    with pytest.raises(CheckpointError, match="pathway0_nonlocal2"):
        SlowFast.convert_checkpoint("pyslowfast", state, source="nl.pyth")
