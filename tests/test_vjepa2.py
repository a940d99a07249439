"""V-JEPA 2 at a reduced size: transformers' reference through the official layout, the layout's
errors, class names from config.json, and every job.

tests/data/vjepa2_reduced_reference.json holds transformers' `VJEPA2ForVideoClassification` logits
and encoder tokens for a reduced model (width 64, 2 heads, MLP ratio 3, 6 frames at 64x64, 7 classes)
with the fixtures' deterministic weights (scripts/vjepa2_reduced_reference.py). The full-size
fixture (vjepa2_l_ssv2) is reproduced by tests/test_transformers.py under `make test-all`.
"""

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

import videozoo
from fixtures_util import deterministic_tensor, write_transformers_dir
from videozoo.models.factory import model_from_checkpoint, save_model
from videozoo.models.registry import get_spec, list_models
from videozoo.models.transformers.vjepa2 import VJEPA2
from videozoo.weights.checkpoint import CheckpointError, read_checkpoint

REFERENCE = json.loads((Path(__file__).parent / "data" / "vjepa2_reduced_reference.json").read_text())
CONFIG = REFERENCE["config"]
ARCH = {"dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 3.0, "crop_size": 64, "num_frames": 6, "pooler_depth": 2}
CLIP = (3, 6, 64, 64)  # (C, T, H, W) of the reduced model


def reduced_spec(name="vjepa2_l_ssv2", **arch):
    spec = get_spec(name)
    inp = dataclasses.replace(spec.input, num_frames=6, crop_size=64, short_side=64, train_crop_size=64)
    return spec.replace(arch={**spec.arch, **ARCH, **arch}, input=inp)


def reference_state():
    return {k: deterministic_tensor(k, s, kind) for k, s, kind in REFERENCE["state_dict"]}


def reference_input():
    shape = REFERENCE["input"]["shape"]
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()


def write_dir(folder, config=None, state=None):
    return write_transformers_dir(
        folder, config or CONFIG, reference_state() if state is None else state, weights="model.safetensors"
    )


def load(folder, spec=None):
    model = model_from_checkpoint(spec or reduced_spec(), read_checkpoint(folder))
    model.input_config = (spec or reduced_spec()).input
    return model


def _within(got, ref, tol=1e-4):
    ref = torch.as_tensor(ref, dtype=torch.float64)
    err = (got.double() - ref).abs().max().item()
    assert err <= tol * ref.abs().max().item(), f"max abs error {err:.3e} vs max |ref| {ref.abs().max():.3e}"


def test_registry_entries():
    names = {"vjepa2_l_ssv2", "vjepa2_l_diving48", "vjepa2_g_ssv2", "vjepa2_g_diving48"}
    assert names <= set(list_models())
    for name in names:
        spec = get_spec(name)
        source = spec.weights[spec.default_weights]
        classes = 174 if name.endswith("ssv2") else 48
        assert spec.num_classes == classes and source.num_classes == classes
        assert source.format == "transformers" and source.url.startswith("https://huggingface.co/facebook/vjepa2-")
        assert spec.input.crop_size == spec.arch["crop_size"] == spec.input.short_side
        assert spec.input.test_crops == 3 and spec.metrics is not None and spec.metrics.top1 is not None
    assert get_spec("vjepa2_g_ssv2").input.num_frames == 64 and get_spec("vjepa2_g_ssv2").arch["dim"] == 1408


def test_reduced_reference_through_the_official_layout(tmp_path):
    state = reference_state()
    model = load(write_dir(tmp_path / "d", state=state))
    # The predictor is set aside: every other value of the file is in the model, once.
    kept = {k: v for k, v in state.items() if not k.startswith("vjepa2.predictor.")}
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in kept.values())
    own = model.state_dict()
    file_values = torch.sort(torch.cat([v.flatten() for v in kept.values()])).values
    assert torch.equal(file_values, torch.sort(torch.cat([v.flatten() for v in own.values()])).values)
    x = reference_input()
    with torch.inference_mode():
        logits, scores, feats = model.inference_outputs(x)
        tokens = model.forward_tokens(x)
    _within(logits, REFERENCE["output_float64"])
    _within(tokens[0], REFERENCE["tokens_float64"])
    assert feats.shape == (2, 64) and tokens.shape == (2, 3 * 4 * 4, 64)
    torch.testing.assert_close(scores.sum(1), torch.ones(2))
    assert model.class_names is None  # config.json names no classes: outputs are labelled by index


def test_any_number_of_frames_runs_but_only_the_crop_size(tmp_path):
    model = load(write_dir(tmp_path / "d"))
    with torch.inference_mode():
        assert model.forward_tokens(torch.randn(1, 3, 10, 64, 64)).shape == (1, 5 * 16, 64)
        assert model(torch.randn(1, 3, 2, 64, 64)).shape == (1, 7)
    for shape in [(1, 3, 6, 48, 48), (1, 3, 5, 64, 64), (3, 6, 64, 64)]:
        with pytest.raises(ValueError, match="V-JEPA 2 takes"):
            model(torch.randn(shape))


def _rename(old, new):
    def change(cfg, state):
        state[new] = state.pop(old)
        return cfg, state

    return change


def _drop(key):
    def change(cfg, state):
        del state[key]
        return cfg, state

    return change


def _add(key, shape):
    def change(cfg, state):
        state[key] = torch.ones(shape)
        return cfg, state

    return change


def _config(**fields):
    def change(cfg, state):
        return {**cfg, **fields}, state

    return change


BAD = [
    # (id, change, words the error must hold)
    ("heads", _config(num_attention_heads=4), ["num_attention_heads is 4", "num_heads=2"]),
    ("mlp-ratio", _config(mlp_ratio=4.0), ["mlp_ratio is 4.0", "mlp_ratio=3.0"]),
    ("crop", _config(crop_size=96, image_size=96), ["crop_size is 96", "crop_size=64"]),
    ("tubelet", _config(tubelet_size=1), ["tubelet_size is 1"]),
    ("pooler-depth", _config(num_pooler_layers=3), ["num_pooler_layers is 3", "pooler_depth=2"]),
    ("no-qkv-bias", _config(qkv_bias=False), ["qkv_bias is False; only True"]),
    ("unknown-field", _config(use_sdpa_rope=True), ["use_sdpa_rope", "not a field this loader knows"]),
    ("model-type", _config(model_type="vivit"), ["model_type is 'vivit'"]),
    ("labels", _config(num_labels=9), ["declares 9 classes", "has 7"]),
    (
        "missing-value",
        _drop("vjepa2.encoder.layer.1.attention.value.weight"),
        ["blocks.1.attn.qkv.weight", "vjepa2.encoder.layer.1.attention.query.weight"],
    ),
    ("missing-norm", _drop("vjepa2.encoder.layer.0.norm2.bias"), ["missing keys", "blocks.0.norm2.bias"]),
    ("missing-query-token", _drop("pooler.query_tokens"), ["missing keys", "pooler.query_tokens"]),
    (
        "missing-cross-key",
        _drop("pooler.cross_attention_layer.cross_attn.k_proj.weight"),
        ["pooler.cross.attn.kv.weight", "pooler.cross_attention_layer.cross_attn.v_proj.weight"],
    ),
    (
        "cross-out-proj",
        _add("pooler.cross_attention_layer.cross_attn.out_proj.weight", (64, 64)),
        ["unexpected keys", "pooler.cross_attention_layer.cross_attn.out_proj.weight"],
    ),
    (
        "position-table",
        _add("vjepa2.encoder.embeddings.position_embeddings", (1, 48, 64)),
        ["unexpected keys", "vjepa2.encoder.embeddings.position_embeddings"],
    ),
    (
        "renamed-layer",
        _rename("vjepa2.encoder.layer.1.mlp.fc1.weight", "vjepa2.encoder.layer.1.mlp.dense1.weight"),
        ["blocks.1.mlp.fc1.weight", "vjepa2.encoder.layer.1.mlp.dense1.weight"],
    ),
    (
        "key-outside-attention",
        _rename("vjepa2.encoder.layer.0.attention.key.weight", "vjepa2.encoder.layer.0.key.weight"),
        ["blocks.0.attn.qkv.weight", "vjepa2.encoder.layer.0.key.weight"],
    ),
    (
        "bad-id2label",
        _config(id2label={"0": "a", "1": "b"}, num_labels=7),
        ["config.json", "id2label names 2 classes"],
    ),
]


@pytest.mark.parametrize("change, says", [pytest.param(c, s, id=i) for i, c, s in BAD])
def test_bad_directory_is_one_clear_error(tmp_path, change, says):
    config, state = change(dict(CONFIG), reference_state())
    folder = write_dir(tmp_path / "d", config, state)
    with pytest.raises(CheckpointError) as e:
        load(folder)
    for words in says:
        assert words in str(e.value)
    assert str(folder) in str(e.value)


def test_training_settings_of_the_config_do_not_matter(tmp_path):
    # The pre-training clip length, dropout and predictor sizes do not change the classifier.
    config = {**CONFIG, "frames_per_clip": 64, "drop_path_rate": 0.1, "pred_num_hidden_layers": 12}
    state = {k: v for k, v in reference_state().items() if not k.startswith("vjepa2.predictor.")}
    model = load(write_dir(tmp_path / "d", config, state))
    with torch.inference_mode():
        _within(model(reference_input()), REFERENCE["output_float64"])


def test_class_names_come_from_the_config(tmp_path):
    names = [f"action {i}" for i in range(7)]
    config = {**CONFIG, "id2label": {str(i): n for i, n in enumerate(names)}}
    model = load(write_dir(tmp_path / "d", config))
    assert model.class_names == names
    # transformers' placeholders for unnamed classes are no names.
    config = {**CONFIG, "id2label": {str(i): f"LABEL_{i}" for i in range(7)}}
    assert load(write_dir(tmp_path / "p", config)).class_names is None
    # Saved and reloaded, the names and outputs stay.
    model.model_name = "vjepa2_l_ssv2"
    again = model_from_checkpoint(get_spec("vjepa2_l_ssv2"), read_checkpoint(save_model(model, tmp_path / "m.pth")))
    assert again.class_names == names
    x = reference_input()
    with torch.inference_mode():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_the_full_size_entries_build_with_the_published_sizes():
    with torch.device("meta"):
        large, giant = get_spec("vjepa2_l_ssv2").build(), get_spec("vjepa2_g_diving48").build()
    # ViT-L/16 encoder + probe, without the predictor (the fixture's 375.5M count holds its 22.1M).
    assert sum(p.numel() for p in large.parameters()) == 353_399_982
    assert giant.blocks[0].mlp.fc1.out_features == 6144 and giant.pooler.blocks[0].mlp.fc1.out_features == 4 * 1408
    assert len(giant.blocks) == 40 and giant.num_classes == 48


# -- the jobs ---------------------------------------------------------------------------------------


def test_predict_through_the_engine(tmp_path):
    from videogen import make_video
    from videozoo.engine import Engine

    video = make_video(tmp_path / "v.mp4", num_frames=60, width=80, height=64, pattern="noise")
    names = [f"action {i}" for i in range(7)]
    model = load(write_dir(tmp_path / "d", {**CONFIG, "id2label": {str(i): n for i, n in enumerate(names)}}))
    reference = copy.deepcopy(model.state_dict())
    engine = Engine(model, views="2x3", precision="fp32")
    top = engine.predict(video).top_k(3)
    assert len(top) == 3 and all(r["label"] in names for r in top)
    for k, v in engine.model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    loaded = engine.load(video)
    views = loaded.views if isinstance(loaded.views, torch.Tensor) else torch.stack(list(loaded.views))
    assert views.shape == (6, *CLIP)
    scores, feats = engine.forward(loaded.views), engine.forward(loaded.views, "features")
    with torch.inference_mode():
        torch.testing.assert_close(scores, model.scores(views), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(feats, model.forward_features(views), rtol=1e-5, atol=1e-5)
    # Without names, the outputs are labelled by index.
    unnamed = load(write_dir(tmp_path / "u"))
    assert {r["label"] for r in Engine(unnamed, views="1x1").predict(video).top_k(2)} <= {str(i) for i in range(7)}


def test_bf16_stays_close_to_float32(tmp_path):
    from videozoo.engine import Engine

    model = load(write_dir(tmp_path / "d"))
    x = reference_input()
    fp32 = Engine(model, precision="fp32").forward(x, "logits")
    bf16 = Engine(model, precision="bf16").forward(x, "logits")
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert 0 < (bf16 - fp32).abs().max() <= 0.1 * fp32.abs().max()


def test_torch_export_gives_the_eager_outputs_at_batch_1_and_2(tmp_path):
    from videozoo.export.graph import prepare, trace

    model = load(write_dir(tmp_path / "d"))
    spec = reduced_spec()
    program = trace(prepare(model, spec.input), spec.input)  # a symbolic batch
    for batch in (1, 2):
        x = torch.randn(batch, *CLIP, generator=torch.Generator().manual_seed(batch))
        got = program.module()(x)
        with torch.inference_mode():
            want = dict(zip(("logits", "scores", "features"), model.inference_outputs(x), strict=True))
        for name, ref in want.items():
            assert got[name].shape == ref.shape
            assert (got[name] - ref).abs().max() <= 1e-4 * ref.abs().max(), name


def test_onnx_export_gives_the_eager_outputs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from videozoo.engine import Engine
    from videozoo.engine.runtime import OnnxModel
    from videozoo.export.api import export

    model = load(write_dir(tmp_path / "d"))
    path = export(model, format="onnx", out=tmp_path / "model.onnx")
    engine = Engine(OnnxModel(path), precision="fp32")
    for batch in (1, 2):
        x = torch.randn(batch, *CLIP, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            want = model(x)
        got = engine.forward(x, "logits")
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_a_reduced_model_fine_tunes_with_adamw_and_drop_path(tmp_path):
    from videozoo.data.synth import make_dataset
    from videozoo.train import TrainConfig, train

    synth = make_dataset(
        tmp_path / "s", classes=("move_left", "move_right"), videos_per_class=3, size=(32, 32), num_frames=10, seed=1
    )
    arch = {"dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "pooler_depth": 1, "crop_size": 32}
    cfg = TrainConfig(
        model="vjepa2_l_ssv2",
        data=str(synth.train_list),
        out=str(tmp_path / "run"),
        epochs=2,
        batch_size=2,
        num_workers=0,
        optimizer="adamw",
        lr=1e-3,
        warmup_epochs=1,
        arch={**arch, "num_frames": 4, "drop_path": 0.1},
        num_frames=4,
        sampling_rate=2,
        fps=15,
        crop_size=32,
        short_side=36,
        progress="none",
        tensorboard=False,
        plot=False,
    )
    result = train(cfg)
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    model = videozoo.create_model("vjepa2_l_ssv2", weights=result.model_path)
    assert isinstance(model, VJEPA2) and model.num_classes == 2
    assert model.class_names == ["move_left", "move_right"] and model.blocks[1].drop_path.p > 0


def test_features_job_writes_pooled_features_or_the_encoder_tokens(tmp_path):
    import numpy as np

    from videogen import make_video
    from videozoo.engine import Engine
    from videozoo.jobs.features import FeatureConfig, extract_features

    videos = [
        str(make_video(tmp_path / f"v{i}.mp4", num_frames=40, width=80, height=64, pattern="noise")) for i in (0, 1)
    ]
    model = load(write_dir(tmp_path / "d"))
    model.model_name = "vjepa2_l_ssv2"
    weights = str(save_model(model, tmp_path / "reduced.safetensors"))
    common = {
        "model": "vjepa2_l_ssv2",
        "videos": videos,
        "weights": weights,
        "views": "2x1",
        "workers": 0,
        "precision": "fp32",
    }
    pooled = extract_features(FeatureConfig(out=str(tmp_path / "pooled"), **common))
    tokens = extract_features(FeatureConfig(out=str(tmp_path / "tokens"), tokens=True, **common))
    assert pooled == {"videos": 2, "failed": 0, "dim": 64, "clips": 4}
    assert tokens == {"videos": 2, "failed": 0, "dim": 64, "clips": 4, "tokens": 48}
    clip_tokens = np.load(tmp_path / "tokens" / "clip_features.npy")
    video_tokens = np.load(tmp_path / "tokens" / "video_features.npy")
    assert clip_tokens.shape == (4, 48, 64) and video_tokens.shape == (2, 48, 64)
    np.testing.assert_allclose(video_tokens[1], clip_tokens[2:].mean(0), rtol=1e-6, atol=1e-6)
    # The rows are the model's own tokens and pooled features of the engine's views.
    engine = Engine(videozoo.create_model("vjepa2_l_ssv2", weights=weights), views="2x1", precision="fp32")
    views = engine.load(videos[0]).views
    views = views if isinstance(views, torch.Tensor) else torch.stack(list(views))
    with torch.inference_mode():
        want_tokens, want_pooled = engine.model.forward_tokens(views), engine.model.forward_features(views)
    np.testing.assert_allclose(clip_tokens[:2], want_tokens.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.load(tmp_path / "pooled" / "clip_features.npy")[:2], want_pooled, rtol=1e-4, atol=1e-4
    )
    # A pooled-features folder is not resumed as a token run.
    with pytest.raises(Exception, match="tokens"):
        extract_features(FeatureConfig(out=str(tmp_path / "pooled"), tokens=True, resume=True, **common))


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"model": "slow_r50"}, "slow_r50 has no encoder tokens"),
        ({"backend": "onnxruntime"}, "computed by the torch backend"),
    ],
)
def test_tokens_are_refused_where_there_are_none(tmp_path, settings, says):
    from videozoo.jobs.features import FeatureConfig, extract_features

    cfg = {"model": "vjepa2_l_ssv2", "out": str(tmp_path / "o"), "videos": ["v.mp4"], "tokens": True, **settings}
    with pytest.raises(ValueError, match=says):
        extract_features(FeatureConfig(**cfg))
    assert not (tmp_path / "o").exists()


def test_engine_tokens_output_needs_a_model_that_has_them(tmp_path):
    from videozoo.engine import Engine

    engine = Engine(videozoo.create_model("x3d_xs"), precision="fp32")
    with pytest.raises(ValueError, match="encoder tokens come from models that expose them"):
        engine.forward(torch.zeros(1, 3, 4, 160, 160), "tokens")


def test_cli_tokens_flag(tmp_path, capsys):
    from videozoo.cli import main

    out = str(tmp_path / "o")
    assert main(["features", "v.mp4", "--model", "vjepa2_l_ssv2", "--out", out, "--tokens", "--dense"]) != 0
    assert "--tokens: pooled-feature runs only; --dense" in capsys.readouterr().err


# -- the encoder alone (VJEPA2Model's files): a feature extractor ------------------------------------

ENCODER_ARCH = {k: v for k, v in ARCH.items() if k != "pooler_depth"}


def encoder_spec():
    spec = get_spec("vjepa2_l_encoder")
    inp = dataclasses.replace(spec.input, num_frames=6, crop_size=64, short_side=64, train_crop_size=64)
    return spec.replace(arch={**spec.arch, **ENCODER_ARCH}, input=inp)


def encoder_dir(folder, **config):
    """VJEPA2Model's own layout: `encoder.*` and `predictor.*`, no probe, no classes."""
    state = {k.removeprefix("vjepa2."): v for k, v in reference_state().items() if k.startswith("vjepa2.")}
    cfg = {k: v for k, v in CONFIG.items() if k != "num_labels"}
    return write_dir(folder, {**cfg, "architectures": ["VJEPA2Model"], **config}, state)


def test_encoder_entries():
    for name, crop in (("vjepa2_l_encoder", 256), ("vjepa2_g_encoder", 384)):
        spec = get_spec(name)
        assert spec.num_classes == 0 and not spec.cls.has_classifier and spec.input.crop_size == crop
        assert spec.weights[spec.default_weights].url.endswith(f"-fpc64-{crop}/resolve/main/model.safetensors")
    model = videozoo.create_model("vjepa2_l_encoder")
    assert model.class_names is None and model.num_classes == 0 and model.num_features == 1024


def test_encoder_directory_gives_the_reference_tokens(tmp_path):
    encoder = model_from_checkpoint(encoder_spec(), read_checkpoint(encoder_dir(tmp_path / "e")))
    x = reference_input()
    with torch.inference_mode():
        tokens, feats = encoder.forward_tokens(x), encoder.forward_features(x)
    _within(tokens[0], REFERENCE["tokens_float64"])
    torch.testing.assert_close(feats, tokens.mean(1))
    assert encoder.class_names is None
    # The classifier's encoder is the same network: the same tokens.
    classifier = load(write_dir(tmp_path / "c"))
    with torch.inference_mode():
        torch.testing.assert_close(classifier.forward_tokens(x), tokens, rtol=0, atol=0)
    # No classes: predicting is refused with what to do instead, and so is a classifier for training.
    with pytest.raises(ValueError, match="has no classifier: it gives features"):
        encoder.scores(x)
    with pytest.raises(ValueError, match="has no classifier to give 5 outputs"):
        videozoo.create_model("vjepa2_l_encoder", weights=str(tmp_path / "e"), num_classes=5)


def test_encoder_directory_errors(tmp_path):
    spec = encoder_spec()
    # A classifier's directory holds a probe and a classifier the encoder has no place for.
    with pytest.raises(CheckpointError, match=r"unexpected keys(.|\n)*pooler.query_tokens") as e:
        model_from_checkpoint(spec, read_checkpoint(write_dir(tmp_path / "c")))
    assert "classifier.weight" in str(e.value) or "head.weight" in str(e.value)
    with pytest.raises(CheckpointError, match="hidden_size is 96"):
        model_from_checkpoint(spec, read_checkpoint(encoder_dir(tmp_path / "w", hidden_size=96)))
    # The probe depth every VJEPA2Config carries is not the encoder's to check.
    model_from_checkpoint(spec, read_checkpoint(encoder_dir(tmp_path / "p", num_pooler_layers=7)))


def test_encoder_features_job_pooled_and_tokens(tmp_path):
    import numpy as np

    from videogen import make_video
    from videozoo.jobs.features import FeatureConfig, extract_features

    video = str(make_video(tmp_path / "v.mp4", num_frames=40, width=80, height=64, pattern="noise"))
    encoder = model_from_checkpoint(encoder_spec(), read_checkpoint(encoder_dir(tmp_path / "e")))
    encoder.input_config = encoder_spec().input
    weights = str(save_model(encoder, tmp_path / "encoder.safetensors"))
    common = {"model": "vjepa2_l_encoder", "videos": [video], "weights": weights, "workers": 0, "precision": "fp32"}
    assert extract_features(FeatureConfig(out=str(tmp_path / "f"), **common))["dim"] == 64
    summary = extract_features(FeatureConfig(out=str(tmp_path / "t"), tokens=True, **common))
    assert summary["tokens"] == 48 and summary["dim"] == 64
    pooled = np.load(tmp_path / "f" / "clip_features.npy")
    tokens = np.load(tmp_path / "t" / "clip_features.npy")
    np.testing.assert_allclose(pooled, tokens.mean(1), rtol=1e-5, atol=1e-5)


def test_tokens_are_not_written_over_ray(tmp_path):
    from videozoo.jobs import ray_run
    from videozoo.jobs.features import FeatureConfig

    cfg = FeatureConfig(model="vjepa2_l_ssv2", out=str(tmp_path / "o"), videos=["v.mp4"], tokens=True)
    with pytest.raises(ValueError, match="single-process runs"):
        ray_run.extract_features(cfg, ray_run.RayOptions())
    assert not (tmp_path / "o").exists()
