"""Every reference fixture: official-format deterministic weights in, the reference output out."""
import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, fixture_files, fixture_input, load_fixture, write_official_checkpoint

if not FIXTURES.is_dir():
    pytest.skip(f"reference fixtures not found at {FIXTURES}", allow_module_level=True)

STEMS = [p.stem for p in fixture_files()]


@pytest.mark.parametrize("stem", STEMS)
def test_reference_output(stem, tmp_path):
    fx = load_fixture(stem)
    suffix = ".pkl" if "Caffe2" in fx["checkpoint_format"] else ".pth"
    path = write_official_checkpoint(fx, tmp_path / f"{stem}{suffix}")
    model = videozoo.create_model(fx["model"], weights=str(path))
    assert sum(p.numel() for p in model.parameters()) == fx["params"]
    x = fixture_input(fx)
    with torch.inference_mode():
        out = model.scores(x) if fx["output_kind"].startswith("probabilities") else model(x)
    ref = torch.tensor(fx["output_float64"], dtype=torch.float64)
    err = (out[0].double() - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), f"{stem}: max abs error {err:.3e} vs max |ref| {ref.abs().max():.3e}"
