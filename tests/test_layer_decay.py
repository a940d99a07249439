"""Layer-wise learning-rate decay in `train`: the parameter groups each transformer family gets
(layer ids, lr scales, weight-decay exemptions), the refusal for models without layers, the
setting's checks, and a reduced-width transformer that learns the synthetic motion task with it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from videozoo.models.registry import get_spec
from videozoo.train.config import TrainConfig, add_cli_arguments, config_from_args
from videozoo.train.param_groups import parameter_groups
from videozoo.train.schedule import LRSchedule, ScheduleSpec

DECAY = 0.75

# Reduced sizes of each transformer family (those of the families' own tests).
REDUCED = {
    "videomae_s_k400": {"dim": 32, "depth": 2, "num_heads": 2, "mlp_hidden": 64, "num_frames": 4, "crop_size": 32},
    "timesformer_b_k400": {"dim": 32, "depth": 2, "num_heads": 2, "mlp_hidden": 64, "num_frames": 4, "crop_size": 32},
    "vivit_b_k400": {"dim": 32, "depth": 2, "num_heads": 2, "mlp_hidden": 64, "num_frames": 4, "crop_size": 32},
    "vjepa2_l_ssv2": {
        "dim": 32,
        "depth": 2,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "pooler_depth": 1,
        "crop_size": 32,
        "num_frames": 4,
    },
    "swin3d_t": {"dim": 16, "depths": (2, 2), "num_heads": (1, 2), "window": (2, 3, 3)},
    "mvit_v2_s": {
        "num_frames": 4,
        "crop_size": 32,
        "depth": 2,
        "width": 16,
        "stage_starts": (1,),
        "kv_stride": (1, 4, 4),
    },
    "mvit_base_16x4": {"num_frames": 4, "crop_size": 32, "depth": 2, "width": 16, "stage_starts": (1,)},
}

# (model, parameter) -> (layer id, weight-decayed). Depth 2 gives layers 0..3; Swin's two stages of
# two blocks give 0..5, its patch merging sharing the layer of the block before it.
EXPECTED = {
    "videomae_s_k400": {
        "patch_embed.proj.weight": (0, True),
        "patch_embed.proj.bias": (0, False),
        "blocks.0.norm1.weight": (1, False),
        "blocks.0.attn.q_bias": (1, False),
        "blocks.0.attn.qkv.weight": (1, True),
        "blocks.1.mlp.fc1.weight": (2, True),
        "blocks.1.mlp.fc1.bias": (2, False),
        "fc_norm.weight": (3, False),
        "head.weight": (3, True),
        "head.bias": (3, False),
    },
    "timesformer_b_k400": {
        "cls_token": (0, False),
        "pos_embed": (0, False),
        "time_embed": (0, False),
        "blocks.0.temporal_fc.weight": (1, True),
        "blocks.1.temporal_attn.qkv.weight": (2, True),
        "norm.bias": (3, False),
        "head.weight": (3, True),
    },
    "vivit_b_k400": {"pos_embed": (0, False), "blocks.1.attn.proj.weight": (2, True), "norm.weight": (3, False)},
    "vjepa2_l_ssv2": {
        "patch_embed.proj.weight": (0, True),
        "blocks.1.mlp.fc2.weight": (2, True),
        "norm.weight": (3, False),
        "pooler.query_tokens": (3, False),
        "pooler.blocks.0.attn.qkv.weight": (3, True),
        "pooler.cross.attn.kv.weight": (3, True),
        "head.weight": (3, True),
    },
    "swin3d_t": {
        "patch_embed.proj.weight": (0, True),
        "patch_embed.norm.weight": (0, False),
        "features.0.0.attn.relative_position_bias_table": (1, False),
        "features.0.1.mlp.fc1.weight": (2, True),
        "features.1.norm.weight": (2, False),
        "features.1.reduction.weight": (2, True),
        "features.2.0.attn.qkv.weight": (3, True),
        "features.2.1.attn.relative_position_bias_table": (4, False),
        "features.2.1.mlp.fc2.bias": (4, False),
        "norm.weight": (5, False),
        "head.weight": (5, True),
        "head.bias": (5, False),
    },
    "mvit_v2_s": {
        "cls_token": (0, False),
        "conv_proj.weight": (0, True),
        "blocks.0.attn.rel_pos_t": (1, False),
        "blocks.0.attn.pool_k.pool.weight": (1, True),
        "blocks.1.project.weight": (2, True),
        "norm.weight": (3, False),
        "head.weight": (3, True),
    },
    "mvit_base_16x4": {
        "patch_embed.patch_model.weight": (0, True),
        "cls_positional_encoding.pos_embed_spatial": (0, False),
        "cls_positional_encoding.cls_token": (0, False),
        "blocks.1.attn.q.weight": (2, True),
        "norm_embed.weight": (3, False),
        "head.proj.weight": (3, True),
    },
}


def reduced_model(name):
    spec = get_spec(name)
    return spec.replace(arch={**spec.arch, **REDUCED[name]}).build(num_classes=3)


def group_of(groups):
    """id(parameter) -> its group."""
    return {id(p): g for g in groups for p in g["params"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_groups_give_each_layer_its_rate_and_exempt_biases_norms_tables_and_tokens(name):
    model = reduced_model(name)
    groups = parameter_groups(model, weight_decay=0.05, layer_decay=DECAY)
    owner = group_of(groups)
    params = dict(model.named_parameters())
    assert len(owner) == len(params)  # every parameter in exactly one group
    top = max(g["layer"] for g in groups)
    assert top == len(model.layer_blocks()) + 1
    for pname, (layer, decayed) in EXPECTED[name].items():
        group = owner[id(params[pname])]
        assert group["layer"] == layer, pname
        assert group["lr_scale"] == pytest.approx(DECAY ** (top - layer)), pname
        assert group["weight_decay"] == (0.05 if decayed else 0.0), pname
    for pname, p in params.items():
        # Every matrix that is not a linear or convolution weight (tables, tokens) is exempt,
        # as is every vector (biases, norms).
        if p.ndim <= 1:
            assert owner[id(p)]["weight_decay"] == 0.0, pname
    # Block i of the model is layer i + 1, all of it.
    for i, block in enumerate(model.layer_blocks()):
        assert {owner[id(p)]["layer"] for p in block.parameters()} == {i + 1}


def test_schedule_sets_each_group_its_share_of_the_rate():
    model = reduced_model("swin3d_t")
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay=0.05, layer_decay=0.5), lr=1.0)
    spec = ScheduleSpec(steps_per_epoch=10, epochs=4, warmup_epochs=1, warmup_factor=0.1, kind="cosine")
    schedule = LRSchedule(optimizer, spec, peak_lr=0.02)
    schedule.step = 5  # half-way through the warm-up
    lr = schedule.apply()
    assert lr == pytest.approx(0.02 * (0.1 + 0.9 * 0.5))
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([lr * 0.5**k for k in range(5, -1, -1)])


def test_without_decay_every_parameter_is_in_one_group():
    model = reduced_model("videomae_s_k400")
    (group,) = parameter_groups(model, weight_decay=0.05, layer_decay=1.0)
    assert len(group["params"]) == len(list(model.parameters())) and group["weight_decay"] == 0.05


def test_a_cnn_is_refused_unless_the_decay_is_1():
    model = get_spec("x3d_xs").build(num_classes=3)
    assert model.layer_ids() is None
    with pytest.raises(ValueError, match=r"--layer-decay 0.75: x3d_xs \(X3D\) declares no layer structure"):
        parameter_groups(model, weight_decay=1e-4, layer_decay=0.75, model_name="x3d_xs")
    (group,) = parameter_groups(model, weight_decay=1e-4, layer_decay=1.0)
    assert len(group["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5])
def test_decay_outside_0_to_1_is_refused(value):
    cfg = TrainConfig(model="videomae_s_k400", data="d", out="o", layer_decay=value)
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        cfg.validate()


def test_flag_and_yaml_set_the_decay(tmp_path):
    import argparse

    parser = add_cli_arguments(argparse.ArgumentParser())
    config = tmp_path / "c.yaml"
    config.write_text("model: videomae_s_k400\ndata: d\nout: o\nlayer_decay: 0.65\n")
    assert config_from_args(parser.parse_args(["--config", str(config)])).layer_decay == 0.65
    args = parser.parse_args(["--config", str(config), "--layer-decay", "0.8"])
    assert config_from_args(args).layer_decay == 0.8


def motion_run(synth, out, **changes):
    """A reduced VideoMAE fine-tuned with the VideoMAE recipe's optimiser on the synthetic motion task."""
    cfg = TrainConfig(
        model="videomae_s_k400",
        data=str(synth.train_list),
        val_data=str(synth.val_list),
        out=str(out),
        epochs=20,
        batch_size=4,
        num_workers=0,
        optimizer="adamw",
        lr=2e-3,
        weight_decay=0.05,
        layer_decay=DECAY,
        schedule="cosine",
        warmup_epochs=1,
        arch={**REDUCED["videomae_s_k400"], "drop_path": 0.1},
        num_frames=4,
        sampling_rate=2,
        fps=15,
        crop_size=32,
        short_side=36,
        cache_videos=True,
        progress="none",
        tensorboard=False,
        plot=False,
    )
    return dataclasses.replace(cfg, **changes)


def test_a_reduced_transformer_learns_the_motion_task_with_layer_decay(tmp_path):
    from videozoo.data.synth import make_dataset
    from videozoo.train import train

    synth = make_dataset(
        tmp_path / "s", classes=("move_left", "move_right"), videos_per_class=16, size=(32, 32), num_frames=10, seed=1
    )
    result = train(motion_run(synth, tmp_path / "run"))
    first, last = result.history[0], result.history[-1]
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert last["train_loss"] < 0.85 * first["train_loss"], result.history
    assert last["val_acc"] > 50, result.history  # two classes: above chance on the held-out videos
    # The run's optimiser kept the groups: the classifier at the full rate, the patch embedding decayed.
    saved = torch.load(tmp_path / "run" / "checkpoint_last.pth", weights_only=True)["train_state"]
    scales = sorted({g["lr_scale"] for g in saved["optimizer"]["param_groups"]})
    assert scales == pytest.approx([DECAY**3, DECAY**2, DECAY, 1.0])


def test_a_resumed_run_with_layer_decay_reaches_the_same_weights(tmp_path):
    from videozoo.data.synth import make_dataset
    from videozoo.train import train
    from videozoo.weights.checkpoint import read_checkpoint

    synth = make_dataset(
        tmp_path / "s", classes=("move_left", "move_right"), videos_per_class=4, size=(32, 32), num_frames=10, seed=1
    )
    # A step schedule: its rates do not depend on the number of epochs, which the resumption raises.
    step = {"schedule": "step", "milestones": [2]}
    train(motion_run(synth, tmp_path / "straight", epochs=3, **step))
    train(motion_run(synth, tmp_path / "split", epochs=2, **step))
    train(motion_run(synth, tmp_path / "split", epochs=3, resume=True, **step))
    want = read_checkpoint(tmp_path / "straight" / "model.pth").state_dict
    got = read_checkpoint(tmp_path / "split" / "model.pth").state_dict
    assert want.keys() == got.keys()
    assert max((want[k].double() - got[k].double()).abs().max().item() for k in want) <= 1e-6
    # A resumption with another decay would train other groups: refused, naming the setting.
    with pytest.raises(ValueError, match="layer_decay"):
        train(motion_run(synth, tmp_path / "split", epochs=4, resume=True, layer_decay=0.5, **step))
