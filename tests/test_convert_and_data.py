"""`videozoo convert`, dataset specs, and feature extraction."""

import json

import numpy as np
import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, fixture_input, load_fixture
from videogen import make_video
from videozoo.data.datasets import DatasetSpecError, load_video_list
from videozoo.weights.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def caffe2_source(official_checkpoint):
    """The official I3D Caffe2 pickle, a small clip, and the logits of the model loaded from it."""
    src = official_checkpoint("i3d_r50_32x2")
    x = fixture_input(load_fixture("i3d_r50_32x2"))[:, :, :8, :96, :96]  # enough to compare two loads
    with torch.inference_mode():
        logits = videozoo.create_model("i3d_r50_32x2", weights=str(src))(x)
    return src, x, logits


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="reference fixtures not found")
@pytest.mark.xdist_group("caffe2_i3d")  # the 350 MB pickle, written once
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_convert_caffe2_pickle_infers_the_model_and_keeps_outputs(tmp_path, suffix, caffe2_source):
    from videozoo.cli import main

    src, x, expected = caffe2_source
    dst = tmp_path / f"i3d{suffix}"
    assert main(["convert", str(src), str(dst)]) == 0
    ckpt = read_checkpoint(dst)
    assert ckpt.model_name == "i3d_r50_32x2" and len(ckpt.class_names) == 400
    with torch.inference_mode():
        converted = videozoo.create_model("i3d_r50_32x2", weights=str(dst))(x)
    torch.testing.assert_close(converted, expected, rtol=0, atol=0)


def test_converted_finetuned_checkpoint_keeps_its_architecture_clip_and_outputs(tmp_path):
    """A width-8 I3D trained on 4-frame 32-pixel clips, converted both ways, is the same model."""
    from videozoo.cli import main
    from videozoo.train import TrainConfig, train

    lines = []
    for i, label in enumerate(["left", "right", "left", "right"]):
        video = make_video(tmp_path / f"v{i}.mp4", num_frames=20, width=40, height=32, pattern="noise", seed=i)
        lines.append(f"{video} {label}\n")
    (tmp_path / "train.txt").write_text("".join(lines))
    cfg = TrainConfig(
        model="i3d_r50",
        data=str(tmp_path / "train.txt"),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=2,
        num_workers=0,
        lr=0.1,
        warmup_epochs=0,
        arch={"width": 8},
        num_frames=4,
        sampling_rate=2,
        fps=15,
        crop_size=32,
        short_side=32,
        progress="none",
        tensorboard=False,
        plot=False,
    )
    trained = train(cfg)
    original = videozoo.create_model("i3d_r50", weights=trained.model_path)
    assert original.arch["width"] == 8 and original.input_config.num_frames == 4
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = original(x)
    for suffix in (".pth", ".safetensors"):
        dst = tmp_path / f"converted{suffix}"
        assert main(["convert", str(trained.model_path), str(dst)]) == 0
        meta = read_checkpoint(dst).meta
        assert meta.model == "i3d_r50" and meta.arch["width"] == 8 and meta.num_classes == 2
        assert meta.training["arch"] == {"width": 8}  # the run's settings travel too
        converted = videozoo.create_model("i3d_r50", weights=str(dst))
        assert converted.class_names == ["left", "right"] == original.class_names
        assert converted.input_config == original.input_config
        with torch.inference_mode():
            got = converted(x)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert torch.equal(got.argmax(dim=1), want.argmax(dim=1))
    # The torch file is a plain-data dict that loads without unpickling code.
    plain = torch.load(tmp_path / "converted.pth", weights_only=True)
    assert plain["videozoo_meta"]["input"]["num_frames"] == 4


def test_convert_refuses_an_ambiguous_or_unknown_checkpoint(tmp_path, capsys):
    from videozoo.cli import main

    path = tmp_path / "x.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    assert main(["convert", str(path), str(tmp_path / "y.safetensors")]) == 2
    assert "no model of the zoo fits" in capsys.readouterr().err


def test_dataset_specs(tmp_path):
    classes = list(videozoo.kinetics400_classes())
    # Kinetics CSV, videos flat under a root.
    root = tmp_path / "val"
    root.mkdir()
    (tmp_path / "val.csv").write_text(
        'label,youtube_id,time_start,time_end,split\n"air drumming",abc,12,22,val\nabseiling,xyz,0,10,val\n'
    )
    vl = load_video_list(tmp_path / "val.csv", classes=classes, root=str(root))
    assert [i.path for i in vl.items] == [str(root / "abc_000012_000022.mp4"), str(root / "xyz_000000_000010.mp4")]
    assert [i.label for i in vl.items] == [1, 0]
    # A folder per class; class folders named with underscores map to the names with spaces.
    for name in ("air_drumming", "abseiling"):
        (tmp_path / "folders" / name).mkdir(parents=True)
        (tmp_path / "folders" / name / "v.mp4").write_bytes(b"")
    vl = load_video_list(tmp_path / "folders", classes=classes)
    assert sorted(i.label for i in vl.items) == [0, 1]
    # `path label` lines, relative to the list's folder; unknown labels are named in the error.
    (tmp_path / "list.txt").write_text("a.mp4 abseiling\nsub/b.mp4 zumba\n")
    vl = load_video_list(tmp_path / "list.txt", classes=classes)
    assert vl.items[1].path == str(tmp_path / "sub" / "b.mp4") and vl.items[1].label == 399
    (tmp_path / "bad.txt").write_text("a.mp4 not_a_class\n")
    with pytest.raises(DatasetSpecError, match="not_a_class"):
        load_video_list(tmp_path / "bad.txt", classes=classes)


def test_features_per_clip_and_video_resumable(tmp_path):
    from videozoo.jobs.features import FeatureConfig, extract_features

    torch.manual_seed(0)
    weights = videozoo.save_model(videozoo.create_model("x3d_xs"), tmp_path / "w.pth")
    videos = [
        str(make_video(tmp_path / f"v{i}.mp4", num_frames=40, width=80, height=64, pattern="noise", seed=i))
        for i in range(3)
    ]
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    cfg = FeatureConfig(
        model="x3d_xs",
        out=str(tmp_path / "f"),
        videos=videos[:2] + [str(tmp_path / "bad.mp4")] + videos[2:],
        weights=str(weights),
        views="2x3",
        workers=0,
        precision="fp32",
    )
    summary = extract_features(cfg)
    assert summary == {"videos": 4, "failed": 1, "dim": 2048, "clips": 18}
    clips = np.load(tmp_path / "f" / "clip_features.npy")
    vids = np.load(tmp_path / "f" / "video_features.npy")
    index = json.loads((tmp_path / "f" / "index.json").read_text())
    assert clips.shape == (18, 2048) and vids.shape == (3, 2048)
    first = index[0]
    np.testing.assert_allclose(vids[0], clips[first["clip_rows"][0] : first["clip_rows"][1]].mean(0), rtol=1e-6)
    assert len(first["clips"]) == 6 and index[2]["error"] and index[2]["video_row"] is None
    # The same features as the model's own forward_features on the same views.
    from videozoo.engine import Engine

    engine = Engine.build("x3d_xs", weights=str(weights), views="2x3", precision="fp32", optimize=False)
    ref = engine.forward(engine.load(videos[0]).views, "features").numpy()
    np.testing.assert_allclose(clips[:6], ref, rtol=1e-4, atol=1e-5)
    # Resume: drop the last video's line and part, and only that one is recomputed.
    lines = (tmp_path / "f" / "index.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "f" / "index.jsonl").write_text("".join(lines[:-1]))
    (tmp_path / "f" / "parts" / "0000003.npy").unlink()
    again = extract_features(FeatureConfig(**{**cfg.__dict__, "resume": True}))
    assert again == summary
    np.testing.assert_allclose(np.load(tmp_path / "f" / "clip_features.npy"), clips, rtol=1e-6)
