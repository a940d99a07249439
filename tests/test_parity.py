"""Every reference fixture: official-format deterministic weights in, the reference output out.

Each model's smallest fixture runs in the default set; its fixtures at larger crops are marked
slow. The scoring over several head positions (per-position softmax, averaged), which only the
fixtures at a model's test crop exercise, stays in the default set through X3D-XS, the cheapest.
"""

import math

import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, fixture_files, fixture_input, fixture_stem, load_fixture

if not FIXTURES.is_dir():
    pytest.skip(f"reference fixtures not found at {FIXTURES}", allow_module_level=True)

STEMS = [fixture_stem(p) for p in fixture_files()]
MULTI_POSITION = "x3d_xs"  # its test-crop fixture also runs in the default set


def _params(stems: list[str]) -> list:
    by_model: dict[str, list[str]] = {}
    for stem in stems:
        by_model.setdefault(load_fixture(stem)["model"], []).append(stem)
    default = set()
    for model, own in by_model.items():
        default.add(min(own, key=lambda s: math.prod(load_fixture(s)["input"]["shape"])))
        if model == MULTI_POSITION:
            default.add(model)
    params = []
    for stem in stems:
        marks = [] if stem in default else [pytest.mark.slow]
        if stem == "i3d_r50_32x2":
            # Its 350 MB Caffe2 pickle is written once for the Caffe2 loading and convert tests too.
            marks.append(pytest.mark.xdist_group("caffe2_i3d"))
        params.append(pytest.param(stem, marks=marks, id=stem))
    return params


@pytest.mark.parametrize("stem", _params(STEMS))
def test_reference_output(stem, official_checkpoint):
    fx = load_fixture(stem)
    model = videozoo.create_model(fx["model"], weights=str(official_checkpoint(stem)))
    assert sum(p.numel() for p in model.parameters()) == fx["params"]
    x = fixture_input(fx)
    # The per-position features of the same pass, for the fixtures that hold them (one forward pass).
    seen: list[torch.Tensor] = []
    own = model.forward_positions
    model.forward_positions = lambda clip: seen.append(own(clip)) or seen[-1]
    with torch.inference_mode():
        logits, scores, features = model.inference_outputs(x)
    positions = seen[0]
    out = scores if fx["output_kind"].startswith("probabilities") else logits
    _check(stem, "output", out[0], fx["output_float64"])
    if "features_float64" in fx:
        # The clip feature, pooled as the reference's feature extraction pools it (features_note).
        n = len(fx["features_float64"])
        _check(stem, "features", features[0, :n], fx["features_float64"])
        _check(stem, "features per step", positions[0, :, :n].T, fx["features_per_step_float64"])


def _check(stem: str, what: str, out: torch.Tensor, expected: list) -> None:
    ref = torch.tensor(expected, dtype=torch.float64)
    assert out.shape == ref.shape, f"{stem} {what}: shape {tuple(out.shape)} vs {tuple(ref.shape)}"
    err = (out.double() - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= 1e-4 * scale, f"{stem} {what}: max abs error {err:.3e} vs max |ref| {scale:.3e}"


def test_default_set_covers_every_model_once_and_several_positions():
    default = [p.values[0] for p in _params(STEMS) if not any(m.name == "slow" for m in p.marks)]
    models = [load_fixture(s)["model"] for s in default]
    assert set(models) == {load_fixture(s)["model"] for s in STEMS}
    assert sorted(s for s in default if models.count(load_fixture(s)["model"]) > 1) == [
        MULTI_POSITION,
        f"{MULTI_POSITION}_at160",
    ]
