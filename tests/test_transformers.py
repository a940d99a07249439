"""The video transformers: fixture parity through the official layouts, the layouts' loaders and
their errors, and the jobs at a reduced size.

Full-size parity runs for every transformer fixture whose model is registered. The loaders are
also exercised on reduced-width models of the same families (built from a config as a publisher
would write it), where no reference output exists: there the checks are that every tensor of the
file lands where it belongs, that what cannot be placed is an error naming it, and that the
model runs through the engine.
"""

import dataclasses
import json
import math
import time

import pytest
import torch

import videozoo
from fixtures_util import (
    TRANSFORMER_FIXTURES,
    deterministic_tensor,
    fixture_input,
    load_transformer_fixture,
    write_deepspeed,
    write_official_transformer,
    write_transformers_dir,
)
from videozoo.models.factory import model_from_checkpoint, save_model
from videozoo.models.registry import get_spec, list_models
from videozoo.weights.checkpoint import CheckpointError, read_checkpoint

if not TRANSFORMER_FIXTURES.is_dir():
    pytest.skip(f"transformer fixtures not found at {TRANSFORMER_FIXTURES}", allow_module_level=True)

STEMS = sorted(p.stem for p in TRANSFORMER_FIXTURES.glob("*.json"))
# Classifier fixtures only: the video-text ones (X-CLIP: text prompts, logits per video) are
# reproduced in tests/test_xclip.py.
REGISTERED = [
    s
    for s in STEMS
    if load_transformer_fixture(s)["model"] in list_models() and "text_prompts" not in load_transformer_fixture(s)
]
# The fixtures this part of the zoo must reproduce; the others arrive with their families.
REQUIRED = {
    "videomae_s_k400",
    "videomae_b_k400",
    "videomaev2_b_k710",
    "timesformer_b_k400",
    "vivit_b_k400",
    "vjepa2_l_ssv2",
    "swin3d_t",
    "swin3d_b",
    "mvit_v2_s",
}
# Over 20 s on two cores: run by `make test-all`; each family's reduced-size tests stay in the default set
# (V-JEPA 2's, against a transformers reference at a reduced size, in tests/test_vjepa2.py; Swin3D's and
# MViTv2's in tests/test_tv_transformers.py).
SLOW = {"timesformer_b_k400", "vivit_b_k400", "vjepa2_l_ssv2", "swin3d_t", "swin3d_b", "mvit_v2_s"}
# Tensors of an official file that the model sets aside by name: V-JEPA 2's self-supervised
# predictor, which classification never runs (the fixture's parameter count includes it).
SET_ASIDE = ("vjepa2.predictor.",)


def test_required_fixtures_are_registered():
    assert REQUIRED <= set(REGISTERED)


@pytest.mark.parametrize(
    "stem", [pytest.param(s, marks=[pytest.mark.slow] if s in SLOW else [], id=s) for s in REGISTERED]
)
def test_reference_output(stem, tmp_path):
    fx = load_transformer_fixture(stem)
    path = write_official_transformer(fx, tmp_path / "official")
    model = videozoo.create_model(fx["model"], weights=str(path))
    set_aside = sum(math.prod(shape) for key, shape, _ in fx["state_dict"] if key.startswith(SET_ASIDE))
    assert sum(p.numel() for p in model.parameters()) == fx["params"] - set_aside
    with torch.inference_mode():
        out = model(fixture_input(fx))
    ref = torch.tensor(fx["output_float64"], dtype=torch.float64)
    assert out.shape == (1, len(ref))
    err = (out[0].double() - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), f"{stem}: max abs error {err:.3e} vs max |ref| {ref.abs().max():.3e}"


# -- reduced-width VideoMAE in the MCG-NJU transformers layout -----------------------------------

TINY_CONFIG = {
    "architectures": ["VideoMAEForVideoClassification"],
    "model_type": "videomae",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "image_size": 32,
    "patch_size": 16,
    "tubelet_size": 2,
    "num_frames": 4,
    "num_channels": 3,
    "qkv_bias": True,
    "layer_norm_eps": 1e-12,
    "use_mean_pooling": True,
    "attention_probs_dropout_prob": 0.0,
    "hidden_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "num_labels": 400,
}
TINY_ARCH = {
    "dim": 64,
    "depth": 2,
    "num_heads": 4,
    "mlp_hidden": 128,
    "num_frames": 4,
    "crop_size": 32,
    "norm_eps": 1e-12,
    "fc_norm_eps": 1e-5,
}


def tiny_spec(name="videomae_s_k400", **arch):
    spec = get_spec(name)
    inp = dataclasses.replace(spec.input, num_frames=4, crop_size=32, short_side=32, train_crop_size=32)
    return spec.replace(arch={**TINY_ARCH, **arch}, input=inp)


def hf_manifest(config):
    """[key, shape, kind] of a VideoMAEForVideoClassification file with this config, in file order."""
    d, f, t, p = config["hidden_size"], config["intermediate_size"], config["tubelet_size"], config["patch_size"]
    rows = [
        ["videomae.embeddings.patch_embeddings.projection.weight", [d, 3, t, p, p], "weight"],
        ["videomae.embeddings.patch_embeddings.projection.bias", [d], "bias"],
    ]
    for i in range(config["num_hidden_layers"]):
        pre = f"videomae.encoder.layer.{i}."
        rows += [
            [pre + "attention.attention.q_bias", [d], "bias"],
            [pre + "attention.attention.v_bias", [d], "bias"],
            [pre + "attention.attention.query.weight", [d, d], "weight"],
            [pre + "attention.attention.key.weight", [d, d], "weight"],
            [pre + "attention.attention.value.weight", [d, d], "weight"],
            [pre + "attention.output.dense.weight", [d, d], "weight"],
            [pre + "attention.output.dense.bias", [d], "bias"],
            [pre + "intermediate.dense.weight", [f, d], "weight"],
            [pre + "intermediate.dense.bias", [f], "bias"],
            [pre + "output.dense.weight", [d, f], "weight"],
            [pre + "output.dense.bias", [d], "bias"],
            [pre + "layernorm_before.weight", [d], "norm_weight"],
            [pre + "layernorm_before.bias", [d], "bias"],
            [pre + "layernorm_after.weight", [d], "norm_weight"],
            [pre + "layernorm_after.bias", [d], "bias"],
        ]
    rows += [
        ["fc_norm.weight", [d], "norm_weight"],
        ["fc_norm.bias", [d], "bias"],
        ["classifier.weight", [config["num_labels"], d], "weight"],
        ["classifier.bias", [config["num_labels"]], "bias"],
    ]
    return rows


def hf_state(config):
    return {k: deterministic_tensor(k, s, kind) for k, s, kind in hf_manifest(config)}


def load_dir(folder, spec=None):
    return model_from_checkpoint(spec or tiny_spec(), read_checkpoint(folder))


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_transformers_directory_places_every_tensor(tmp_path, weights):
    state = hf_state(TINY_CONFIG)
    model = load_dir(write_transformers_dir(tmp_path / "d", TINY_CONFIG, state, weights=weights))
    own = model.state_dict()
    for i in range(2):
        pre, blk = f"videomae.encoder.layer.{i}.attention.attention.", f"blocks.{i}.attn."
        qkv = torch.cat([state[pre + n + ".weight"] for n in ("query", "key", "value")])
        assert torch.equal(own[blk + "qkv.weight"], qkv)
        # The biases are the file's, not zeros: the key bias stays absent.
        assert torch.equal(own[blk + "q_bias"], state[pre + "q_bias"]) and own[blk + "q_bias"].abs().sum() > 0
        assert torch.equal(own[blk + "v_bias"], state[pre + "v_bias"])
        assert model.blocks[i].attn.qkv.bias is None
        assert torch.equal(
            own[f"blocks.{i}.mlp.fc1.weight"], state[f"videomae.encoder.layer.{i}.intermediate.dense.weight"]
        )
    assert torch.equal(own["head.weight"], state["classifier.weight"])
    assert torch.equal(own["fc_norm.bias"], state["fc_norm.bias"])
    assert len(own) == len(state) - 2 * 2  # query/key/value stacked into one qkv per layer
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert model(x).shape == (2, 400) and model.forward_features(x).shape == (2, 64)


def _edit(config=None, drop=(), add=None, rename=None):
    def change(cfg, state):
        cfg = {**cfg, **(config or {})}
        for k in drop:
            cfg.pop(k, None) if k in cfg else state.pop(k)
        state.update(add or {})
        for old, new in (rename or {}).items():
            state[new] = state.pop(old)
        return cfg, state

    return change


BAD_DIRECTORIES = [
    # (id, change, words the error must hold)
    ("heads", _edit({"num_attention_heads": 8}), ["config.json", "num_attention_heads is 8", "num_heads=4"]),
    ("width", _edit({"hidden_size": 96}), ["config.json", "hidden_size is 96"]),
    ("activation", _edit({"hidden_act": "gelu_fast"}), ["config.json", "hidden_act is 'gelu_fast'"]),
    ("norm-eps", _edit({"layer_norm_eps": 1e-6}), ["config.json", "layer_norm_eps is 1e-06"]),
    ("no-qv-bias", _edit({"qkv_bias": False}), ["config.json", "qkv_bias is False"]),
    ("frames", _edit({"num_frames": 16}), ["config.json", "num_frames is 16"]),
    ("cls-token-pooling", _edit({"use_mean_pooling": False}), ["config.json", "use_mean_pooling is False"]),
    ("unknown-field", _edit({"use_rope": True}), ["config.json", "use_rope", "not a field this loader knows"]),
    ("model-type", _edit({"model_type": "vivit"}), ["config.json", "model_type is 'vivit'"]),
    ("labels", _edit({"num_labels": 174}), ["config.json", "174 classes", "400"]),
    (
        "id2label",
        _edit({"id2label": {str(i): f"class {i}" for i in range(3)}}, drop=["num_labels"]),
        ["config.json", "declares 3 classes"],
    ),
    (
        "missing-q-bias",
        _edit(drop=["videomae.encoder.layer.1.attention.attention.q_bias"]),
        ["1 missing keys", "blocks.1.attn.q_bias"],
    ),
    (
        "missing-fc-norm",
        _edit(drop=["fc_norm.weight"]),
        ["missing keys", "fc_norm.weight"],
    ),
    (
        "unexpected-key-bias",
        _edit(add={"videomae.encoder.layer.0.attention.attention.k_bias": torch.ones(64)}),
        ["unexpected keys", "videomae.encoder.layer.0.attention.attention.k_bias"],
    ),
    (
        "unexpected-position-table",
        _edit(add={"videomae.embeddings.position_embeddings": torch.ones(1, 8, 64)}),
        ["unexpected keys", "videomae.embeddings.position_embeddings"],
    ),
    (
        "query-bias-instead-of-q-bias",
        _edit(
            rename={
                "videomae.encoder.layer.0.attention.attention.q_bias": "videomae.encoder.layer.0.attention.attention.query.bias"
            }
        ),
        ["blocks.0.attn.q_bias", "videomae.encoder.layer.0.attention.attention.query.bias"],
    ),
    (
        "value-weight-missing",
        _edit(drop=["videomae.encoder.layer.0.attention.attention.value.weight"]),
        ["blocks.0.attn.qkv.weight", "videomae.encoder.layer.0.attention.attention.query.weight"],
    ),
]


@pytest.mark.parametrize("change, says", [pytest.param(c, s, id=i) for i, c, s in BAD_DIRECTORIES])
def test_bad_transformers_directory_is_one_clear_error(tmp_path, change, says):
    config, state = change(dict(TINY_CONFIG), hf_state(TINY_CONFIG))
    folder = write_transformers_dir(tmp_path / "d", config, state)
    with pytest.raises(CheckpointError) as e:
        load_dir(folder)
    for words in says:
        assert words in str(e.value)
    assert str(folder) in str(e.value)


def test_sharded_safetensors_directory(tmp_path):
    from safetensors.torch import save_file

    state = hf_state(TINY_CONFIG)
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    keys = list(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(folder / name))
    index = {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load_dir(folder)
    assert torch.equal(model.state_dict()["head.weight"], state["classifier.weight"])
    assert torch.equal(
        model.state_dict()["blocks.1.attn.v_bias"], state["videomae.encoder.layer.1.attention.attention.v_bias"]
    )
    # A shard outside the folder is refused, and so is a missing one.
    index["weight_map"][keys[0]] = "../model-00001-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="must be files of the folder"):
        read_checkpoint(folder)
    index["weight_map"][keys[0]] = "model-00003-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="shards missing"):
        read_checkpoint(folder)


def test_directory_without_config_or_weights(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without config.json"):
        read_checkpoint(tmp_path / "empty")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(TINY_CONFIG))
    with pytest.raises(CheckpointError, match="no weights"):
        read_checkpoint(tmp_path / "cfg")
    (tmp_path / "cfg" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint(tmp_path / "cfg")


def test_published_config_that_disagrees_with_the_registry_is_refused(tmp_path):
    # The Hub's small model has 16 heads; the same file declaring the original ViT-S's 6 is refused
    # before any weight is placed (a classifier is enough to get there).
    fx = load_transformer_fixture("videomae_s_k400")
    state = {
        "videomae.embeddings.patch_embeddings.projection.bias": torch.zeros(384),
        "classifier.weight": torch.zeros(400, 384),
        "classifier.bias": torch.zeros(400),
    }
    folder = write_transformers_dir(tmp_path / "d", {**fx["config"], "num_attention_heads": 6}, state)
    with pytest.raises(
        CheckpointError, match=r"config.json.*\n.*num_attention_heads is 6, but the registry entry builds num_heads=16"
    ):
        videozoo.create_model("videomae_s_k400", weights=str(folder))


def test_saved_model_reloads_identically(tmp_path):
    model = load_dir(write_transformers_dir(tmp_path / "d", TINY_CONFIG, hf_state(TINY_CONFIG)))
    model.model_name = "videomae_s_k400"
    path = save_model(model, tmp_path / "tiny.safetensors")
    ckpt = read_checkpoint(path)
    assert ckpt.meta.arch["dim"] == 64
    again = model_from_checkpoint(get_spec("videomae_s_k400"), ckpt)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


# -- every transformers-layout family at a reduced width, from its fixture's manifest ---------------

# The full-size dimensions of the fixtures and their reduced values: width, MLP width, fused qkv,
# the position tables (1 + tokens) and the time table of 4 frames at a 32 crop.
_REDUCE = {768: 64, 384: 64, 3072: 128, 1536: 128, 2304: 192, 197: 5, 3137: 9, 8: 4}
_REDUCED_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "image_size": 32,
    "num_frames": 4,
}
# V-JEPA 2's config names its sizes differently (mlp_ratio, crop_size, frames_per_clip): its reduced
# directories are tests/test_vjepa2.py's, checked against a transformers reference.
HF_STEMS = [
    s
    for s in REGISTERED
    if "config" in load_transformer_fixture(s) and load_transformer_fixture(s)["model"] != "vjepa2_l_ssv2"
]


def reduced_directory(stem, folder, *, config=None, change=None):
    """The fixture's file layout at a reduced width and depth: (directory, its state, the reduced spec)."""
    fx = load_transformer_fixture(stem)
    rows = []
    for key, shape, kind in fx["state_dict"]:
        parts = key.split(".")
        if "layer" in parts and int(parts[parts.index("layer") + 1]) >= 2:
            continue
        rows.append((key, [_REDUCE.get(n, n) for n in shape], kind))
    state = {k: deterministic_tensor(k, s, kind) for k, s, kind in rows}
    cfg = {**fx["config"], **_REDUCED_CONFIG, **(config or {})}
    if change:
        cfg, state = change(cfg, state)
    spec = get_spec(fx["model"])
    arch = {"dim": 64, "mlp_hidden": 128, "num_heads": 4, "depth": 2, "crop_size": 32, "num_frames": 4}
    inp = dataclasses.replace(spec.input, num_frames=4, crop_size=32, short_side=32, train_crop_size=32)
    spec = spec.replace(arch={**spec.arch, **arch}, input=inp)
    return write_transformers_dir(folder, cfg, state), state, spec


@pytest.mark.parametrize("stem", HF_STEMS)
def test_reduced_directory_of_each_family_loads_every_tensor(stem, tmp_path):
    folder, state, spec = reduced_directory(stem, tmp_path / "d")
    model = model_from_checkpoint(spec, read_checkpoint(folder))
    own = model.state_dict()
    # Every value of the file is in the model, once (q/k/v stacked, per-frame patch kernels given a
    # time axis of 1): the same multiset of numbers.
    assert sum(v.numel() for v in own.values()) == sum(v.numel() for v in state.values())
    file_values = torch.sort(torch.cat([v.flatten() for v in state.values()])).values
    own_values = torch.sort(torch.cat([v.flatten() for v in own.values()])).values
    assert torch.equal(file_values, own_values)
    assert torch.equal(own["head.weight"], state["classifier.weight"])
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits, scores, feats = model.inference_outputs(x)
    assert logits.shape == (2, 400) and feats.shape == (2, 64)
    torch.testing.assert_close(scores.sum(1), torch.ones(2))


def _drop_first(word):
    def change(cfg, state):
        key = next(k for k in state if ".layer.1." in k and word in k)
        del state[key]
        return cfg, state

    return change


def _add_layer_key(name):
    def change(cfg, state):
        prefix = next(k for k in state if ".layer.0." in k).split(".layer.0.")[0]
        state[f"{prefix}.layer.0.{name}"] = torch.ones(64)
        return cfg, state

    return change


@pytest.mark.parametrize("stem", HF_STEMS)
@pytest.mark.parametrize(
    "config, change, says",
    [
        pytest.param({"num_attention_heads": 8}, None, "num_attention_heads is 8", id="heads"),
        pytest.param({"layer_norm_eps": 1e-3}, None, "layer_norm_eps is 0.001", id="norm-eps"),
        pytest.param({"hidden_act": "relu"}, None, "hidden_act is 'relu'", id="activation"),
        pytest.param({"some_new_field": 1}, None, "some_new_field", id="unknown-field"),
        pytest.param(None, _drop_first("layernorm_after.weight"), "norm2.weight", id="missing-norm"),
        pytest.param(None, _add_layer_key("attention.attention.k_bias"), "attention.attention.k_bias", id="unexpected"),
    ],
)
def test_reduced_directory_errors_name_the_field_or_key(stem, tmp_path, config, change, says):
    folder, _, spec = reduced_directory(stem, tmp_path / "d", config=config, change=change)
    with pytest.raises(CheckpointError) as e:
        model_from_checkpoint(spec, read_checkpoint(folder))
    assert says in str(e.value) and str(folder) in str(e.value)


def test_timesformer_attention_type_and_vivit_tubelet_are_checked(tmp_path):
    folder, _, spec = reduced_directory("timesformer_b_k400", tmp_path / "t", config={"attention_type": "space_only"})
    with pytest.raises(CheckpointError, match="attention_type is 'space_only'; only 'divided_space_time'"):
        model_from_checkpoint(spec, read_checkpoint(folder))
    folder, _, spec = reduced_directory("vivit_b_k400", tmp_path / "v", config={"tubelet_size": [4, 16, 16]})
    with pytest.raises(
        CheckpointError, match=r"tubelet_size is \[4, 16, 16\], but the registry entry builds tubelet=2"
    ):
        model_from_checkpoint(spec, read_checkpoint(folder))


# -- VideoMAE V2: the DeepSpeed float16 container and the Kinetics-710 head -----------------------

V2_ARCH = {**TINY_ARCH, "norm_eps": 1e-6, "fc_norm_eps": 1e-6}


def v2_state(classes=710):
    """Deterministic weights under the reduced model's own keys (VideoMAE V2's layout)."""
    model = tiny_spec("videomaev2_b_k710", **V2_ARCH).build(num_classes=classes)
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith(".weight"):
            kind = "norm_weight" if "norm" in k.rsplit(".", 2)[-2] else "weight"
        else:  # .bias, q_bias, v_bias
            kind = "bias"
        state[k] = deterministic_tensor(k, list(v.shape), kind)
    return state


def test_deepspeed_float16_container_is_upcast(tmp_path):
    state = v2_state()
    half = {k: v.half() for k, v in state.items()}
    path = write_deepspeed(tmp_path / "vit_tiny_k710.pth", half)
    ckpt = read_checkpoint(path)
    assert ckpt.format == "deepspeed" and all(v.dtype == torch.float32 for v in ckpt.state_dict.values())
    model = model_from_checkpoint(tiny_spec("videomaev2_b_k710", **V2_ARCH), ckpt)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, half[k].float()), k
    assert model.num_classes == 710


def test_kinetics400_entry_reads_its_classes_from_the_k710_head(tmp_path):
    from videozoo.data.classes import k400_rows_in_k710, kinetics400_classes

    fx = load_transformer_fixture("videomaev2_b_k710")
    rows = k400_rows_in_k710()
    assert list(rows) == fx["k400_from_k710"]
    path = write_deepspeed(tmp_path / "v2.pth", v2_state())
    k710 = model_from_checkpoint(tiny_spec("videomaev2_b_k710", **V2_ARCH), read_checkpoint(path))
    k400 = model_from_checkpoint(tiny_spec("videomaev2_b_k400", **V2_ARCH), read_checkpoint(path))
    assert k400.num_classes == 400 and k400.class_names == list(kinetics400_classes())
    assert k710.class_names is None  # Kinetics-710's names are not shipped
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(k400(x), k710(x)[:, list(rows)], rtol=0, atol=0)
    # Saved and reloaded, the 400-class model stays as it is (the map is not applied twice).
    k400.model_name = "videomaev2_b_k400"
    again = model_from_checkpoint(
        get_spec("videomaev2_b_k400"), read_checkpoint(save_model(k400, tmp_path / "k400.pth"))
    )
    with torch.inference_mode():
        torch.testing.assert_close(again(x), k400(x), rtol=0, atol=0)


def test_v2_file_missing_a_bias_is_refused(tmp_path):
    state = v2_state()
    del state["blocks.0.attn.v_bias"]
    path = write_deepspeed(tmp_path / "v2.pth", state)
    with pytest.raises(CheckpointError, match=r"missing keys:\n\s+blocks.0.attn.v_bias"):
        model_from_checkpoint(tiny_spec("videomaev2_b_k710", **V2_ARCH), read_checkpoint(path))


# -- the jobs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", HF_STEMS)
def test_predict_through_the_engine_at_a_reduced_size(stem, tmp_path):
    from videogen import make_video
    from videozoo.engine import Engine

    video = make_video(tmp_path / "v.mp4", num_frames=40, width=48, height=40, pattern="noise")
    folder, _, spec = reduced_directory(stem, tmp_path / "d")
    model = model_from_checkpoint(spec, read_checkpoint(folder))
    model.input_config = spec.input
    reference = model.state_dict()
    engine = Engine(model, views="2x3", precision="fp32")
    top = engine.predict(video).top_k(3)
    assert len(top) == 3 and all(r["label"] in videozoo.kinetics400_classes() for r in top)
    # The engine's optimisation leaves a transformer's weights as they were.
    for k, v in engine.model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    loaded = engine.load(video)
    views = loaded.views if isinstance(loaded.views, torch.Tensor) else torch.stack(list(loaded.views))
    scores, feats = engine.forward(loaded.views), engine.forward(loaded.views, "features")
    assert scores.shape == (6, 400) and feats.shape == (6, 64)
    with torch.inference_mode():
        torch.testing.assert_close(scores, model.scores(views), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(feats, model.forward_features(views), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stem", HF_STEMS)
def test_torch_export_gives_the_eager_outputs_at_batch_1_and_2(stem, tmp_path):
    from videozoo.export.graph import prepare, trace

    folder, _, spec = reduced_directory(stem, tmp_path / "d")
    model = model_from_checkpoint(spec, read_checkpoint(folder))
    program = trace(prepare(model, spec.input), spec.input)  # a symbolic batch
    for batch in (1, 2):
        x = torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(batch))
        got = program.module()(x)
        with torch.inference_mode():
            want = dict(zip(("logits", "scores", "features"), model.inference_outputs(x), strict=True))
        for name, ref in want.items():
            assert got[name].shape == ref.shape
            assert (got[name] - ref).abs().max() <= 1e-4 * ref.abs().max(), name


def test_predict_by_name_runs_the_full_size_model(tmp_path):
    from videogen import make_video

    video = make_video(tmp_path / "v.mp4", num_frames=40, width=96, height=72, pattern="noise")
    t0 = time.perf_counter()
    top = videozoo.predict(str(video), model="videomae_s_k400", weights=None, top_k=2, precision="fp32")
    assert len(top) == 2 and sum(p for _, p in top) <= 1.0
    assert time.perf_counter() - t0 < 120


@pytest.mark.parametrize("name", ["videomae_s_k400", "timesformer_b_k400", "vivit_b_k400"])
def test_a_reduced_model_fine_tunes_with_adamw_and_drop_path(name, tmp_path):
    from videozoo.data.synth import make_dataset
    from videozoo.train import TrainConfig, train

    synth = make_dataset(
        tmp_path / "s", classes=("move_left", "move_right"), videos_per_class=3, size=(32, 32), num_frames=10, seed=1
    )
    arch = {"dim": 32, "depth": 2, "num_heads": 2, "mlp_hidden": 64, "num_frames": 4, "crop_size": 32, "drop_path": 0.1}
    cfg = TrainConfig(
        model=name,
        data=str(synth.train_list),
        out=str(tmp_path / "run"),
        epochs=2,
        batch_size=2,
        num_workers=0,
        optimizer="adamw",
        lr=1e-3,
        warmup_epochs=1,
        arch=arch,
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
    model = videozoo.create_model(name, weights=result.model_path)
    assert model.num_classes == 2 and model.class_names == ["move_left", "move_right"]
    assert model.arch["dim"] == 32 and model.blocks[1].drop_path.p > 0


@pytest.mark.parametrize("stem", HF_STEMS)
def test_onnx_export_gives_the_eager_outputs_in_onnxruntime(stem, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from videozoo.engine import Engine
    from videozoo.engine.runtime import OnnxModel
    from videozoo.export.api import export

    folder, _, spec = reduced_directory(stem, tmp_path / "d")
    model = model_from_checkpoint(spec, read_checkpoint(folder))
    model.input_config = spec.input
    path = export(model, format="onnx", out=tmp_path / "model.onnx")
    engine = Engine(OnnxModel(path), precision="fp32")
    for batch in (1, 2):
        x = torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            want = model(x)
        got = engine.forward(x, "logits")
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_bf16_inference_stays_close_to_float32(tmp_path):
    from videozoo.engine import Engine

    folder, _, spec = reduced_directory("videomae_s_k400", tmp_path / "d")
    model = model_from_checkpoint(spec, read_checkpoint(folder))
    model.input_config = spec.input
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    fp32 = Engine(model, precision="fp32").forward(x, "logits")
    bf16 = Engine(model, precision="bf16").forward(x, "logits")
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert (bf16 - fp32).abs().max() > 0  # the products did run in bf16
    # bf16 keeps 8 bits of mantissa: a few percent of the logits' scale, never a different model.
    assert (bf16 - fp32).abs().max() <= 0.1 * fp32.abs().max()
