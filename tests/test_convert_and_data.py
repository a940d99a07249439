"""`videozoo convert`, dataset specs, and feature extraction."""
import json

import numpy as np
import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, fixture_input, load_fixture
from videogen import make_video
from videozoo.data.datasets import DatasetSpecError, load_video_list
from videozoo.weights.checkpoint import read_checkpoint, save_checkpoint


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
        "label,youtube_id,time_start,time_end,split\n"
        '"air drumming",abc,12,22,val\n'
        "abseiling,xyz,0,10,val\n"
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
    weights = save_checkpoint(tmp_path / "w.pth", videozoo.create_model("x3d_xs").state_dict(), model_name="x3d_xs")
    videos = [
        str(make_video(tmp_path / f"v{i}.mp4", num_frames=40, width=80, height=64, pattern="noise", seed=i))
        for i in range(3)
    ]
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    listed = [*videos[:2], str(tmp_path / "bad.mp4"), *videos[2:]]
    cfg = FeatureConfig(
        model="x3d_xs", out=str(tmp_path / "f"), videos=listed, weights=str(weights), views="2x3", workers=0
    )
    summary = extract_features(cfg)
    assert summary == {"videos": 4, "failed": 1, "dim": 2048, "clips": 18}
    clips = np.load(tmp_path / "f" / "clip_features.npy")
    vids = np.load(tmp_path / "f" / "video_features.npy")
    index = json.loads((tmp_path / "f" / "index.json").read_text())
    assert clips.shape == (18, 2048) and vids.shape == (3, 2048)
    first = index[0]
    np.testing.assert_allclose(vids[0], clips[first["clip_rows"][0]:first["clip_rows"][1]].mean(0), rtol=1e-6)
    assert len(first["clips"]) == 6 and index[2]["error"] and index[2]["video_row"] is None
    # The same features as the model's own forward_features on the same views.
    from videozoo.engine.predictor import Predictor

    pred = Predictor("x3d_xs", weights=str(weights), views="2x3", optimize=False)
    from videozoo.engine.predictor import load_views

    ref = pred.feature_views(load_views(videos[0], pred.transform).views).numpy()
    np.testing.assert_allclose(clips[:6], ref, rtol=1e-4, atol=1e-5)
    # Resume: drop the last video's line and part, and only that one is recomputed.
    lines = (tmp_path / "f" / "index.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "f" / "index.jsonl").write_text("".join(lines[:-1]))
    (tmp_path / "f" / "parts" / "0000003.npy").unlink()
    again = extract_features(FeatureConfig(**{**cfg.__dict__, "resume": True}))
    assert again == summary
    np.testing.assert_allclose(np.load(tmp_path / "f" / "clip_features.npy"), clips, rtol=1e-6)
