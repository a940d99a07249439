"""Video Swin (Swin3D) and MViTv2 from torchvision's `.pth` layouts: the loaders and their errors,
and the jobs, on reduced-width models written in the official key layout.

The full-size fixtures (swin3d_t, swin3d_b, mvit_v2_s) are reproduced by `test_reference_output` in
tests/test_transformers.py. Here the reduced models' files are checked against the fixtures'
manifests (the same keys, block numbers aside), every tensor must land in the model once, and
what cannot be placed is an error naming it.
"""

import dataclasses
import math
import re

import pytest
import torch

import videozoo
from fixtures_util import (
    TRANSFORMER_FIXTURES,
    deterministic_tensor,
    load_transformer_fixture,
    swin_position_index,
    write_torchvision_pth,
)
from videozoo.models.factory import model_from_checkpoint
from videozoo.models.registry import get_spec
from videozoo.weights.checkpoint import CheckpointError, read_checkpoint

if not TRANSFORMER_FIXTURES.is_dir():
    pytest.skip(f"transformer fixtures not found at {TRANSFORMER_FIXTURES}", allow_module_level=True)

FRAMES, CROP = 4, 32
SWIN_WINDOW = (2, 3, 3)
# Reduced variants: two stages, width 16 (Swin: two blocks each, windows of 2x3x3, so that the
# 8x8 and 4x4 maps are padded and shifted; MViTv2: a block that pools and widens after one that
# does not).
REDUCED = {
    "swin3d_t": {"dim": 16, "depths": (2, 2), "num_heads": (1, 2), "window": SWIN_WINDOW},
    "mvit_v2_s": {
        "num_frames": FRAMES,
        "crop_size": CROP,
        "depth": 2,
        "width": 16,
        "stage_starts": (1,),
        "kv_stride": (1, 4, 4),
    },
}
NAMES = sorted(REDUCED)


def reduced_spec(name):
    spec = get_spec(name)
    inp = dataclasses.replace(spec.input, num_frames=FRAMES, crop_size=CROP, short_side=CROP, train_crop_size=CROP)
    return spec.replace(arch={**spec.arch, **REDUCED[name]}, input=inp)


def torchvision_name(name, key):
    """This model's key as torchvision's file names it."""
    key = key.replace(".mlp.fc1.", ".mlp.0.").replace(".mlp.fc2.", ".mlp.3.")
    if name.startswith("mvit"):
        key = key.replace(".attn.proj.", ".attn.project.0.")
        key = re.sub(r"\.pool_(q|k|v)\.norm\.", r".pool_\1.norm_act.0.", key)
        key = re.sub(r"^head\.", "head.1.", key).replace("cls_token", "pos_encoding.class_token")
    return key


def _kind(key):
    if key.endswith(".bias") or key.endswith("class_token"):
        return "bias"
    return "norm_weight" if key.endswith(".weight") and "norm" in key.rsplit(".", 2)[-2] else "weight"


def reduced_state(name):
    """Deterministic weights of the reduced model under torchvision's names, in its module order."""
    with torch.device("meta"):
        model = reduced_spec(name).build()
    return {
        torchvision_name(name, k): deterministic_tensor(torchvision_name(name, k), list(v.shape), _kind(k))
        for k, v in model.state_dict().items()
    }


def reduced_file(name, path, change=None):
    state = reduced_state(name)
    if change:
        state = change(state)
    window = SWIN_WINDOW if name.startswith("swin") else None
    return write_torchvision_pth(path, state, swin_window=window)


def load(name, path):
    return model_from_checkpoint(reduced_spec(name), read_checkpoint(path))


def _layout(keys):
    # Block and stage numbers aside: features.6.1.attn.qkv.weight -> features.N.N.attn.qkv.weight
    return {re.sub(r"\.\d+\.", ".N.", re.sub(r"\.\d+\.", ".N.", k)) for k in keys}


@pytest.mark.parametrize("name", NAMES)
def test_reduced_file_has_the_official_layout_and_every_tensor_lands_once(name, tmp_path):
    path = reduced_file(name, tmp_path / f"{name}.pth")
    file = torch.load(path, weights_only=True)
    fx = load_transformer_fixture(name)
    # The same key names as the published file (the fixture's manifest), block numbers aside.
    assert _layout(k for k in file if not k.endswith("relative_position_index")) == _layout(
        k for k, _, _ in fx["state_dict"]
    )
    ckpt = read_checkpoint(path)
    assert ckpt.format == "torchvision"
    model = model_from_checkpoint(reduced_spec(name), ckpt)
    own = model.state_dict()
    weights = {k: v for k, v in file.items() if v.is_floating_point()}
    assert sum(v.numel() for v in own.values()) == sum(v.numel() for v in weights.values())
    file_values = torch.sort(torch.cat([v.flatten() for v in weights.values()])).values
    own_values = torch.sort(torch.cat([v.flatten() for v in own.values()])).values
    assert torch.equal(file_values, own_values)
    head = "head.weight" if name.startswith("swin") else "head.1.weight"
    assert torch.equal(own["head.weight"], file[head])
    x = torch.randn(2, 3, FRAMES, CROP, CROP, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits, scores, feats = model.inference_outputs(x)
    assert logits.shape == (2, 400) and feats.shape == (2, model.num_features)
    torch.testing.assert_close(scores.sum(1), torch.ones(2))


def test_swin_files_hold_the_position_index_of_each_window(tmp_path):
    path = reduced_file("swin3d_t", tmp_path / "s.pth")
    file = torch.load(path, weights_only=True)
    index = [k for k in file if k.endswith("relative_position_index")]
    assert len(index) == 4 and all(file[k].dtype == torch.int64 for k in index)
    model = load("swin3d_t", path)
    # The index is the model's own constant (not a weight of the file), equal to the file's.
    assert not any(k.endswith("relative_position_index") for k in model.state_dict())
    assert torch.equal(model.features[0][0].attn.relative_position_index, file[index[0]])
    # A file without the buffers (a re-saved state dict) loads the same weights.
    bare = {k: v for k, v in file.items() if k not in index}
    torch.save(bare, tmp_path / "bare.pth")
    again = load("swin3d_t", tmp_path / "bare.pth")
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def _drop(key):
    return lambda state: {k: v for k, v in state.items() if k != key}


def _add(key, value):
    return lambda state: {**state, key: value}


def _replace(key, value):
    return lambda state: {k: (value if k == key else v) for k, v in state.items()}


BAD_FILES = [
    # (id, model, change to the state, words the error must hold)
    (
        "swin-missing-bias-table",
        "swin3d_t",
        _drop("features.2.1.attn.relative_position_bias_table"),
        ["missing keys", "features.2.1.attn.relative_position_bias_table"],
    ),
    (
        "swin-table-of-another-window",
        "swin3d_t",
        _replace("features.0.0.attn.relative_position_bias_table", torch.zeros(3 * 7 * 7, 1)),
        ["features.0.0.attn.relative_position_index", "not the relative position index"],
    ),
    ("swin-missing-mlp", "swin3d_t", _drop("features.0.1.mlp.3.bias"), ["missing keys", "features.0.1.mlp.fc2.bias"]),
    (
        "swin-unexpected",
        "swin3d_t",
        _add("features.0.0.attn.q_bias", torch.ones(16)),
        ["unexpected keys", "features.0.0.attn.q_bias"],
    ),
    (
        "swin-merging-norm",
        "swin3d_t",
        _drop("features.1.norm.weight"),
        ["missing keys", "features.1.norm.weight"],
    ),
    (
        "mvit-missing-rel-pos",
        "mvit_v2_s",
        _drop("blocks.1.attn.rel_pos_t"),
        ["missing keys", "blocks.1.attn.rel_pos_t"],
    ),
    (
        "mvit-missing-pool-norm",
        "mvit_v2_s",
        _drop("blocks.0.attn.pool_k.norm_act.0.weight"),
        ["missing keys", "blocks.0.attn.pool_k.norm.weight"],
    ),
    (
        "mvit-absolute-positions",
        "mvit_v2_s",
        _add("pos_encoding.spatial_pos", torch.ones(64, 16)),
        ["unexpected keys", "pos_encoding.spatial_pos"],
    ),
    (
        "mvit-rel-pos-size",
        "mvit_v2_s",
        _replace("blocks.0.attn.rel_pos_h", torch.ones(13, 16)),
        ["shape mismatches", "blocks.0.attn.rel_pos_h: checkpoint (13, 16) vs model (15, 16)"],
    ),
    ("mvit-no-class-token", "mvit_v2_s", _drop("pos_encoding.class_token"), ["missing keys", "cls_token"]),
]


@pytest.mark.parametrize("name, change, says", [pytest.param(n, c, s, id=i) for i, n, c, s in BAD_FILES])
def test_bad_torchvision_file_is_one_clear_error(tmp_path, name, change, says):
    path = reduced_file(name, tmp_path / "bad.pth", change)
    with pytest.raises(CheckpointError) as e:
        load(name, path)
    for words in says:
        assert words in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "index, says",
    [
        pytest.param(swin_position_index((2, 3, 3)).flip(0), "not the relative position index", id="shuffled"),
        pytest.param(swin_position_index((1, 3, 6)), "not the relative position index", id="other-window"),
        pytest.param(torch.zeros(3, 3, dtype=torch.int64), "not the relative position index", id="wrong-size"),
    ],
)
def test_wrong_swin_position_index_is_refused(tmp_path, index, says):
    state = reduced_state("swin3d_t")
    file = {}
    for k, v in state.items():
        file[k] = v
        if k.endswith("relative_position_bias_table"):
            file[k.replace("bias_table", "index")] = swin_position_index(SWIN_WINDOW)
    file["features.2.0.attn.relative_position_index"] = index
    torch.save(file, tmp_path / "s.pth")
    with pytest.raises(CheckpointError, match="features.2.0.attn.relative_position_index.*" + says):
        load("swin3d_t", tmp_path / "s.pth")


def test_swin_takes_any_clip_size_and_mvit_v2_only_its_own():
    swin = reduced_spec("swin3d_t").build().eval()
    with torch.inference_mode():
        # Not a multiple of the patch or of the window: padded, as the reference does.
        assert swin(torch.randn(1, 3, 5, 30, 34)).shape == (1, 400)
    mvit = reduced_spec("mvit_v2_s").build().eval()
    with pytest.raises(ValueError, match="MViTv2 takes clips of exactly 4x32x32"):
        mvit(torch.randn(1, 3, 4, 48, 48))


# -- the jobs ---------------------------------------------------------------------------------------


def reduced_model(name, tmp_path):
    spec = reduced_spec(name)
    model = model_from_checkpoint(spec, read_checkpoint(reduced_file(name, tmp_path / f"{name}.pth")))
    model.input_config = spec.input
    return model, spec


@pytest.mark.parametrize("name", NAMES)
def test_predict_and_features_through_the_engine(name, tmp_path):
    from videogen import make_video
    from videozoo.engine import Engine

    video = make_video(tmp_path / "v.mp4", num_frames=40, width=48, height=40, pattern="noise")
    model, _ = reduced_model(name, tmp_path)
    reference = model.state_dict()
    engine = Engine(model, views="2x3", precision="fp32")
    top = engine.predict(video).top_k(3)
    assert len(top) == 3 and all(r["label"] in videozoo.kinetics400_classes() for r in top)
    for k, v in engine.model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    loaded = engine.load(video)
    views = loaded.views if isinstance(loaded.views, torch.Tensor) else torch.stack(list(loaded.views))
    scores, feats = engine.forward(loaded.views), engine.forward(loaded.views, "features")
    assert scores.shape == (6, 400) and feats.shape == (6, model.num_features)
    with torch.inference_mode():
        torch.testing.assert_close(scores, model.scores(views), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(feats, model.forward_features(views), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_gives_the_eager_outputs_at_batch_1_and_2(name, tmp_path):
    from videozoo.export.graph import prepare, trace

    model, spec = reduced_model(name, tmp_path)
    program = trace(prepare(model, spec.input), spec.input)  # a symbolic batch
    for batch in (1, 2):
        x = torch.randn(batch, 3, FRAMES, CROP, CROP, generator=torch.Generator().manual_seed(batch))
        got = program.module()(x)
        with torch.inference_mode():
            want = dict(zip(("logits", "scores", "features"), model.inference_outputs(x), strict=True))
        for key, ref in want.items():
            assert got[key].shape == ref.shape
            assert (got[key] - ref).abs().max() <= 1e-4 * ref.abs().max(), key


# ONNX's conversion of the windowed and pooled attention takes 45-100 s per family on two shared
# cores: run by `make test-all`; torch.export parity above stays in the default set.
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_gives_the_eager_outputs_in_onnxruntime(name, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from videozoo.engine import Engine
    from videozoo.engine.runtime import OnnxModel
    from videozoo.export.api import export

    model, _ = reduced_model(name, tmp_path)
    path = export(model, format="onnx", out=tmp_path / "model.onnx")
    engine = Engine(OnnxModel(path), precision="fp32")
    for batch in (1, 2):
        x = torch.randn(batch, 3, FRAMES, CROP, CROP, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            want = model(x)
        got = engine.forward(x, "logits")
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_bf16_inference_stays_close_to_float32(name, tmp_path):
    from videozoo.engine import Engine

    model, _ = reduced_model(name, tmp_path)
    x = torch.randn(2, 3, FRAMES, CROP, CROP, generator=torch.Generator().manual_seed(0))
    fp32 = Engine(model, precision="fp32").forward(x, "logits")
    bf16 = Engine(model, precision="bf16").forward(x, "logits")
    assert torch.isfinite(bf16).all() and (bf16 - fp32).abs().max() > 0
    assert (bf16 - fp32).abs().max() <= 0.1 * fp32.abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_a_reduced_model_fine_tunes_with_adamw_and_drop_path(name, tmp_path):
    from videozoo.data.synth import make_dataset
    from videozoo.train import TrainConfig, train

    synth = make_dataset(
        tmp_path / "s", classes=("move_left", "move_right"), videos_per_class=3, size=(32, 32), num_frames=10, seed=1
    )
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
        arch={**REDUCED[name], "drop_path": 0.1},
        num_frames=FRAMES,
        sampling_rate=2,
        fps=15,
        crop_size=CROP,
        short_side=36,
        progress="none",
        tensorboard=False,
        plot=False,
    )
    result = train(cfg)
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    model = videozoo.create_model(name, weights=result.model_path)
    assert model.num_classes == 2 and model.class_names == ["move_left", "move_right"]
    blocks = model.features[2] if name.startswith("swin") else model.blocks
    assert blocks[1].drop_path.p > 0
