"""Registry-driven checks of every model: entry completeness, shapes, gradients, heads, figures."""

import dataclasses
import json

import pytest
import torch

import videozoo
from videozoo.models.flops import model_gflops, model_params, view_input
from videozoo.models.registry import get_spec

SEED_MODELS = {"slow_r50", "slowfast_r50", "slowfast_r101", "i3d_r50_32x2", "r3d_18", "mc3_18", "r2plus1d_18"}
OTHER_MODELS = {
    "slowfast_16x8_r101_50_50",
    "i3d_r50",
    "c2d_r50",
    "csn_r101",
    "r2plus1d_r50",
    "x3d_xs",
    "x3d_s",
    "x3d_m",
    "x3d_l",
    "i3d_r50_nl_32x2",
    "s3d",
    "mvit_base_16x4",
    # Video transformers in torchvision's layout and with torchvision's published figures.
    "swin3d_t",
    "swin3d_s",
    "swin3d_b",
    "swin3d_b_in22k",
    "mvit_v2_s",
}
# Models whose weights ship inside the package rather than being published for Kinetics-400.
EMBEDDED_MODELS = {"motion_tiny"}
# Published Kinetics-400 weights that come with no accuracy or cost figure for the file itself.
UNRATED_MODELS = {"i3d_inception_rgb"}
# Video transformers: publishers' layouts (transformers directories, DeepSpeed containers).
TRANSFORMER_MODELS = {
    *(f"timesformer_{size}_k400" for size in ("b", "hr", "l")),
    "vivit_b_k400",
    *(f"videomae_{size}_k400" for size in "sblh"),
    *(f"videomaev2_{size}_{head}" for size in "sb" for head in ("k400", "k710")),
    *(f"vjepa2_{size}_{data}" for size in "lg" for data in ("ssv2", "diving48", "encoder")),
}
# Video-text models: classes are text labels given at run time, not a classifier layer (their entries
# are checked in tests/test_xclip.py; the classifier checks below do not apply to them).
VIDEO_TEXT_MODELS = {"xclip_b32_8f", "xclip_b32_16f", "xclip_b16_8f", "xclip_b16_16f", "xclip_b16_zero_shot"}
# Built at full width in the shape test; the larger ones share their classes and only cost time.
SMALL_TRANSFORMERS = sorted(n for n in TRANSFORMER_MODELS if not any(f"_{s}_" in n for s in "lhg"))
ALL = sorted(SEED_MODELS | OTHER_MODELS)


def test_registry_holds_exactly_the_zoo():
    zoo = SEED_MODELS | OTHER_MODELS | EMBEDDED_MODELS | UNRATED_MODELS | TRANSFORMER_MODELS | VIDEO_TEXT_MODELS
    assert set(videozoo.list_models()) == zoo


@pytest.mark.parametrize("name", sorted(UNRATED_MODELS))
def test_unrated_entry_is_complete_and_lists_no_figure(name):
    spec = get_spec(name)
    source = spec.weights["kinetics400"]
    assert source.url.startswith("https://") and source.format == "torchvision"
    m = spec.metrics
    assert m is not None and m.source
    assert (m.top1, m.top5, m.gflops, m.params_m) == (None, None, None, None)
    assert spec.description and spec.paper
    assert spec.input.crop_size <= spec.input.short_side and spec.default_weights == "kinetics400"


@pytest.mark.parametrize("name", ALL)
def test_entry_is_complete(name):
    spec = get_spec(name)
    inp = spec.input
    assert inp.num_frames > 0 and inp.sampling_rate > 0 and inp.fps > 0
    assert inp.crop_size <= inp.short_side or inp.resize is not None
    assert len(inp.mean) == 3 and len(inp.std) == 3 and inp.channel_order in ("RGB", "BGR")
    assert inp.test_clips >= 1 and inp.test_crops >= 1
    source = spec.weights["kinetics400"]
    assert source.url.startswith("https://") and source.format in ("pyth", "torchvision", "caffe2", "pyslowfast")
    m = spec.metrics
    assert m is not None and m.top1 and m.top5 and m.params_m and m.source
    # Where no GFLOPs figure was published, the table shows only the computed one.
    assert m.gflops is not None or name.startswith("i3d_r50") and name.endswith("32x2")
    assert spec.description
    assert spec.default_weights == "kinetics400" and spec.class_names is None


@pytest.mark.parametrize("name", sorted(TRANSFORMER_MODELS))
def test_transformer_entry_is_complete(name):
    spec = get_spec(name)
    inp = spec.input
    assert inp.num_frames > 0 and inp.sampling_rate > 0 and inp.fps > 0 and inp.crop_size <= inp.short_side
    with torch.device("meta"):
        built = spec.build()
    assert (built.num_frames, built.crop_size) == (inp.num_frames, inp.crop_size)
    source = spec.weights[spec.default_weights]
    assert source.url.startswith("https://") and source.format in ("transformers", "deepspeed")
    m = spec.metrics
    assert m is not None and m.source and m.views == f"{inp.test_clips}x{inp.test_crops}"
    # The table's accuracy columns are Kinetics-400's unless the figure names its dataset (V-JEPA 2's
    # probes, on their own datasets' classes); a 710-class head has no Kinetics-400 figure to show.
    assert bool(m.top1) == (spec.num_classes == 400 or m.dataset == source.dataset != "kinetics400")
    assert spec.description and spec.paper
    if spec.head_rows is not None:
        assert len(spec.head_rows) == spec.num_classes and max(spec.head_rows) < source.num_classes
    else:
        assert spec.num_classes == source.num_classes


def test_cached_weight_names_are_distinct():
    from videozoo.weights.hub import cache_path

    paths = {}
    for name in videozoo.list_models():
        for source in get_spec(name).weights.values():
            paths.setdefault(cache_path(source), set()).add(source.url)
    assert all(len(urls) == 1 for urls in paths.values()), [u for u in paths.values() if len(u) > 1]


@pytest.mark.parametrize("name", sorted(EMBEDDED_MODELS))
def test_embedded_entry_is_complete(name):
    spec = get_spec(name)
    source = spec.weights[spec.default_weights]
    assert source.packaged and source.format == "safetensors" and source.sha256 and source.size
    assert source.num_classes == spec.num_classes == len(spec.class_names)
    assert spec.input.crop_size <= spec.input.short_side and spec.description


SMALL_FRAMES, SMALL_CROP = 8, 32  # a short, small clip: every stage still has a map to work on


def _small_input(spec, batch):
    # The clip's frames and crop reduced where the architecture allows it (the heads pool a map
    # smaller than their training window whole); fixed-size models take their own.
    if getattr(spec.cls, "fixed_input_size", False):
        crop = None
    else:
        crop = SMALL_CROP
        spec = spec.replace(input=dataclasses.replace(spec.input, num_frames=min(spec.input.num_frames, SMALL_FRAMES)))
    x = view_input(spec, batch=batch, crop=crop)
    # Random, not zero: bias-free convolutions before BatchNorm would give all-zero features.
    g = torch.Generator().manual_seed(0)
    return [torch.randn(t.shape, generator=g) for t in x] if isinstance(x, list) else torch.randn(x.shape, generator=g)


# Entries that differ from another only by their weights: the same network, built once.
SAME_NETWORK = {"swin3d_b_in22k"}  # swin3d_b's architecture, ImageNet-22K pre-training


@pytest.mark.parametrize(
    "name", sorted(set(ALL) - SAME_NETWORK) + sorted(EMBEDDED_MODELS | UNRATED_MODELS) + SMALL_TRANSFORMERS
)
def test_shapes_gradients_and_head_reset(name):
    torch.manual_seed(0)
    spec = get_spec(name)
    if getattr(spec.cls, "fixed_input_size", False):
        # A fixed-size model is checked at a reduced clip size to keep the suite fast.
        spec = spec.replace(input=dataclasses.replace(spec.input, num_frames=4, crop_size=SMALL_CROP))
        model = spec.build(num_classes=7, num_frames=4, crop_size=SMALL_CROP).train()
    else:
        model = videozoo.create_model(name, num_classes=7).train()
    x = _small_input(spec, batch=2)
    logits = model(x)
    assert logits.shape == (2, 7)
    logits.logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"
    assert model.get_classifier().weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features)
        torch.testing.assert_close(model.get_classifier()(feats), model(x), rtol=1e-4, atol=1e-4)
        probs = model.scores(x)
        torch.testing.assert_close(probs.sum(1), torch.ones(2))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3


@pytest.mark.parametrize("name", ALL)
def test_computed_figures_match_published(name):
    spec = get_spec(name)
    params = model_params(spec) / 1e6
    assert params == pytest.approx(spec.metrics.params_m, abs=0.006)
    gflops = model_gflops(spec)
    if spec.metrics.gflops is not None and spec.metrics.flops_note is None:
        assert gflops == pytest.approx(spec.metrics.gflops, abs=0.006)


def test_seed_card_figures():
    assert round(model_gflops("slow_r50"), 2) == 54.52
    assert round(model_gflops("slowfast_r50"), 2) == 65.71
    assert round(model_gflops("r3d_18"), 2) == 40.70


@pytest.mark.xdist_group("model_table")
def test_models_cli_json(capsys):
    from videozoo.cli import main

    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "multiply-add" in out["flops_convention"]
    expected = set(ALL) | EMBEDDED_MODELS | UNRATED_MODELS | TRANSFORMER_MODELS | VIDEO_TEXT_MODELS
    assert {r["name"] for r in out["models"]} == expected
    row = next(r for r in out["models"] if r["name"] == "slow_r50")
    assert row["gflops"] == 54.52 and row["published"]["gflops"] == 54.52


def test_hubconf_loads_like_the_seed_cards():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    model = torch.hub.load(str(repo), "slow_r50", source="local", pretrained=False)
    assert isinstance(model, videozoo.models.VideoClassifier) and model.num_classes == 400


@pytest.mark.xdist_group("model_table")
def test_docs_tables_are_generated_from_the_registry(monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    # `python scripts/update_docs.py --check`, run in this process (no second torch import).
    script = Path(__file__).resolve().parents[1] / "scripts" / "update_docs.py"
    module_spec = importlib.util.spec_from_file_location("update_docs", script)
    update_docs = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(update_docs)
    monkeypatch.setattr("sys.argv", [str(script), "--check"])
    assert update_docs.main() == 0, capsys.readouterr().out


def _weight_sources():
    return [(name, key, src) for name in videozoo.list_models() for key, src in get_spec(name).weights.items()]


# The table's figures are computed once per process (every model built): the tests that read
# them share one pytest-xdist worker.
@pytest.mark.xdist_group("model_table")
def test_models_table_shows_each_licence(capsys):
    from videozoo.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "weights licence" in out
    for name, _, source in _weight_sources():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert source.license.split(" <")[0] in line  # the SPDX id, or the name of the terms
    assert main(["models", "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "[CC-BY-NC-4.0](https://spdx.org/licenses/CC-BY-NC-4.0.html)" in md
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    for name, key, source in _weight_sources():
        assert rows[name]["weights_license"][key] == source.license
