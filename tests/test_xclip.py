"""X-CLIP: the fixture through the official transformers layout, strict loading, the registry entries,
and the model as a classifier over a label set."""

from __future__ import annotations

import copy

import pytest
import torch

import videozoo
from fixtures_util import (
    deterministic_state,
    fixture_input,
    write_transformers_dir,
)
from videozoo.models.registry import get_spec
from videozoo.models.video_text.xclip import XClip
from videozoo.weights.errors import CheckpointError
from xclip_small import SMALL_ARCH, SMALL_CONFIG, fixture, register_small, small_state, with_positions

VARIANTS = ("xclip_b32_8f", "xclip_b32_16f", "xclip_b16_8f", "xclip_b16_16f", "xclip_b16_zero_shot")


# 196.6 M deterministic values drawn, written and read: 9 s on an idle 2-core machine (56 s with its
# cores three times oversubscribed), so it stays in the default set as every model's smallest fixture.
def test_fixture_through_the_official_layout(tmp_path):
    fx = fixture()
    state = with_positions(deterministic_state(fx), 77, 50)
    # The fixture's layout holds both files with the same tensors; the smaller tests load both formats.
    folder = write_transformers_dir(tmp_path / "xclip-base-patch32", fx["config"], state, weights="model.safetensors")
    del state
    model = videozoo.create_model("xclip_b32_8f", weights=str(folder))
    assert isinstance(model, XClip) and not model.training and model.model_name == "xclip_b32_8f"
    assert sum(p.numel() for p in model.parameters()) == fx["params"]
    ids, mask = model.tokenize(fx["text_prompts"])
    assert ids.shape == mask.shape == (3, 77) and ids.dtype == mask.dtype == torch.int64
    assert ids.tolist() == fx["input_ids"] and mask.tolist() == fx["attention_mask"]
    x = fixture_input(fx)
    with torch.inference_mode():
        logits = model(x, texts=fx["text_prompts"])
        same = model(x, texts=(ids, mask))
        embeds = model.video_embeds(x)
    ref = torch.tensor(fx["output_float64"], dtype=torch.float64)
    assert logits.shape == (1, 3)
    err = (logits[0].double() - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), err
    assert torch.equal(same, logits)
    ref_embeds = torch.tensor(fx["video_embeds"], dtype=torch.float64)
    err = (embeds[0, :16].double() - ref_embeds).abs().max().item()
    assert err <= 1e-4 * ref_embeds.abs().max().item(), err


@pytest.fixture
def small_registry(monkeypatch):
    """A registry entry `xclip_small` with the small architecture."""
    return register_small(monkeypatch)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_both_official_file_formats_load_every_tensor(tmp_path, small_registry, weights):
    fx = fixture()
    state = small_state(fx)
    folder = write_transformers_dir(tmp_path / "small", SMALL_CONFIG, state, weights=weights)
    model = videozoo.create_model("xclip_small", weights=str(folder))
    own = model.state_dict()
    # Spot checks of each kind of renaming: fused q|k|v, fused k|v, transposed, unsqueezed.
    layer = "vision_model.encoder.layers.0.message_attn"
    qkv = torch.cat([state[f"{layer}.{p}_proj.weight"] for p in "qkv"])
    assert torch.equal(own["blocks.0.message_attn.qkv.weight"], qkv)
    kv = torch.cat([state[f"prompts_generator.decoder.0.cross_attn.{p}_proj.weight"] for p in "kv"])
    assert torch.equal(own["prompts_layers.0.cross_attn.kv.weight"], kv)
    assert torch.equal(own["prompts_visual_projection.weight"], state["prompts_visual_projection"].t())
    assert torch.equal(own["patch_embed.proj.weight"][:, :, 0], state["vision_model.embeddings.patch_embedding.weight"])
    assert torch.equal(own["logit_scale"], state["logit_scale"])
    assert torch.equal(own["text.layers.0.mlp.fc2.bias"], state["text_model.encoder.layers.0.mlp.fc2.bias"])
    # Every value of the file is somewhere in the model (the int64 positions aside).
    weights_total = sum(v.numel() for k, v in state.items() if not k.endswith("position_ids"))
    assert sum(v.numel() for v in own.values()) == weights_total
    x = torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x, texts=["a video of a dog", "a video of a cat", "cooking"])
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_unplaced_missing_and_disagreeing_are_errors_naming_them(tmp_path, small_registry):
    fx = fixture()
    state = small_state(fx)
    state["prompts_generator.decoder.1.norm1.weight"] = torch.ones(8)
    state["vision_model.encoder.layers.0.message_extra.weight"] = torch.ones(16)
    del state["mit.position_embedding"]
    del state["vision_model.encoder.layers.0.message_attn.k_proj.bias"]
    with pytest.raises(CheckpointError) as e:
        videozoo.create_model("xclip_small", weights=str(write_transformers_dir(tmp_path / "a", SMALL_CONFIG, state)))
    message = str(e.value)
    for name in (
        "prompts_layers.1.norm1.weight",  # a second prompt layer the config does not have
        "vision_model.encoder.layers.0.message_extra.weight",
        "vision_model.encoder.layers.0.message_attn.q_proj.bias",  # the incomplete q/k/v set
        "mit_positions.weight",
        "blocks.0.message_attn.qkv.bias",
    ):
        assert name in message, (name, message)

    config = copy.deepcopy(SMALL_CONFIG)
    config["vision_config"]["num_frames"] = 8
    config["prompt_alpha"] = 0.2
    with pytest.raises(CheckpointError) as e:
        videozoo.create_model(
            "xclip_small", weights=str(write_transformers_dir(tmp_path / "b", config, small_state(fx)))
        )
    assert "num_frames is 8" in str(e.value) and "prompt_alpha is 0.2" in str(e.value)

    config = copy.deepcopy(SMALL_CONFIG)
    config["vision_config"]["use_something"] = True
    with pytest.raises(CheckpointError, match="use_something"):
        videozoo.create_model(
            "xclip_small", weights=str(write_transformers_dir(tmp_path / "c", config, small_state(fx)))
        )


def test_a_label_set_makes_a_classifier(tmp_path, small_registry):
    fx = fixture()
    folder = write_transformers_dir(tmp_path / "small", SMALL_CONFIG, small_state(fx))
    model = videozoo.create_model("xclip_small", weights=str(folder))
    x = torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="set_labels"):
        model(x)
    labels = ["dog", "cat", "person cooking"]
    with torch.no_grad():
        # Text embeddings read from the padding-cut ids are those of the full 77 columns.
        full = model.text(*model.tokenize(labels))
        torch.testing.assert_close(model.encode_text(labels), full, rtol=1e-5, atol=1e-6)
    assert model.set_labels(labels, template="a video of a {}.") is model
    assert model.class_names == labels and model.num_classes == 3
    with torch.no_grad():
        direct = model(x, texts=[f"a video of a {label}." for label in labels])
        logits, scores, features = model.inference_outputs(x)
        torch.testing.assert_close(model(x), direct)
        torch.testing.assert_close(logits, direct)
        torch.testing.assert_close(model.scores(x), direct.softmax(-1))
        torch.testing.assert_close(scores, direct.softmax(-1))
        assert features.shape == (2, 8)
        torch.testing.assert_close(features.norm(dim=-1), torch.ones(2))
    with pytest.raises(TypeError, match="set_labels"):
        model.reset_classifier(5)
    with pytest.raises(ValueError, match="clips"):
        model(torch.zeros(1, 3, 4, 32, 32), texts=["a"])
    with pytest.raises(ValueError, match="text labels"):
        videozoo.create_model("xclip_small", weights=str(folder), num_classes=5)


def test_convert_writes_a_videozoo_file_that_loads_alone(tmp_path, small_registry):
    from videozoo.models.convert import convert_checkpoint

    folder = write_transformers_dir(tmp_path / "small", SMALL_CONFIG, small_state(fixture()))
    name, out = convert_checkpoint(folder, tmp_path / "xclip_small.safetensors")  # the model inferred
    assert name == "xclip_small"
    original = videozoo.create_model("xclip_small", weights=str(folder))
    converted = videozoo.create_model("xclip_small", weights=str(out))
    assert converted.class_names is None and converted.arch == SMALL_ARCH
    x = torch.randn(1, 3, 2, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(converted(x, texts=["a", "b c"]), original(x, texts=["a", "b c"]), rtol=0, atol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_registry_entries(name):
    spec = get_spec(name)
    assert spec.family == "xclip" and spec.cls is XClip and spec.num_classes == 0
    inp = spec.input
    assert (inp.crop_size, inp.short_side, inp.test_clips, inp.test_crops) == (224, 224, 4, 3)
    assert inp.mean == (0.485, 0.456, 0.406) and inp.std == (0.229, 0.224, 0.225)
    source = spec.weights[spec.default_weights]
    assert (
        source.url.startswith("https://huggingface.co/microsoft/xclip-base-patch") and source.format == "transformers"
    )
    with torch.device("meta"):
        model = spec.build()
    assert (model.num_frames, model.crop_size) == (inp.num_frames, 224)
    assert model.patch_size == int(name[7:9])
    assert spec.metrics is not None and spec.metrics.views == "4x3" and spec.description and spec.paper


def test_random_initialisation_trains(small_registry):
    model = videozoo.create_model("xclip_small").train()
    assert model.class_names is None and model.num_classes == 0
    x = torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(2))
    out = model(x, texts=["a", "b"])
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    # Every weight takes part (the text embedding rows of unused tokens aside).
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == [], no_grad


# -- zero-shot classification ----------------------------------------------------------------------


@pytest.fixture
def small_weights(tmp_path, small_registry):
    return str(write_transformers_dir(tmp_path / "small", SMALL_CONFIG, small_state(fixture())))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from videogen import make_video

    folder = tmp_path_factory.mktemp("videos")
    return [
        str(make_video(folder / f"v{seed}.mp4", num_frames=40, width=64, height=48, pattern="noise", seed=seed))
        for seed in (1, 2)
    ]


def test_classify_scores_the_templated_labels_with_one_text_pass(small_weights, videos, monkeypatch):
    from videozoo.jobs import classify as job

    labels = ["dog running", "person cooking", "car"]
    calls = []
    engine = None
    original = job.zero_shot_engine

    def spy(*args, **kwargs):
        nonlocal engine
        engine = original(*args, **kwargs)
        text = engine.model.text
        forward = text.forward
        monkeypatch.setattr(text, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
        return engine

    monkeypatch.setattr(job, "zero_shot_engine", spy)
    out = videozoo.classify(videos, model="xclip_small", labels=",".join(labels), weights=small_weights, top_k=2)
    assert calls == []  # the label set was embedded once, before any video
    assert [e["video"] for e in out] == videos
    for entry, path in zip(out, videos, strict=True):
        assert entry["model"] == "xclip_small" and entry["views"] == "1x1"
        assert [r["label"] in labels for r in entry["top_k"]] == [True, True]
        # The same view through the model with the templated texts gives the same probabilities.
        view = engine.load(path).views  # (1, 3, 2, 32, 32)
        with torch.no_grad():
            probs = engine.model(view.float(), texts=[f"a video of {label}." for label in labels]).softmax(-1)[0]
        expected = sorted(zip(probs.tolist(), labels, strict=True), reverse=True)[:2]
        got = [(r["probability"], r["label"]) for r in entry["top_k"]]
        assert [g[1] for g in got] == [e[1] for e in expected]
        assert got[0][0] == pytest.approx(expected[0][0], abs=2e-3)  # bf16 where the CPU runs it natively


def test_classify_cli_prints_predict_json(small_weights, videos, tmp_path, capsys):
    import json

    from videozoo.cli.main import main

    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("dog running\n\n  person cooking \ncar\n")
    common = ["--model", "xclip_small", "--weights", small_weights, "--json", "--precision", "fp32"]
    # One video per call: with several, the command decodes in a worker process (as predict does),
    # which this single-process test run leaves out.
    lines = []
    for video in videos:
        assert main(["classify", video, *common, "--labels-file", str(labels_file), "--top-k", "9"]) == 0
        lines += [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["video"] for e in lines] == videos
    for entry in lines:
        assert {"video", "model", "views", "precision", "top_k", "seconds"} <= set(entry)
        assert sorted(r["label"] for r in entry["top_k"]) == ["car", "dog running", "person cooking"]
        assert sum(r["probability"] for r in entry["top_k"]) == pytest.approx(1.0, abs=1e-5)
    # Another template changes the scores; inline labels give the same as the file.
    assert main(["classify", videos[0], *common, "--labels", "dog running,person cooking,car", "--top-k", "9"]) == 0
    inline = json.loads(capsys.readouterr().out)
    assert inline["top_k"] == lines[0]["top_k"]
    assert main(["classify", videos[0], *common, "--labels", "dog running,person cooking,car", "--template", "{}"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["top_k"] != inline["top_k"]
    assert main(["classify", videos[0], *common, "--labels", "a,a"]) == 2
    assert "more than once" in capsys.readouterr().err
    assert main(["classify", videos[0], *common, "--labels", "a,b", "--template", "a video"]) == 2


def test_classify_refuses_a_fixed_class_model():
    from videozoo.jobs.classify import parse_labels

    with pytest.raises(ValueError, match="video-text model"):
        videozoo.classify("x.mp4", model="x3d_xs", labels="a,b", weights=None)
    assert parse_labels(" a , b,,c ") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no labels"):
        parse_labels(" , ")
