"""Evaluate, timeline and serve on each video-transformer family at a reduced size.

Each family's reduced model is written in its official layout (the builders of
tests/test_transformers.py, tests/test_vjepa2.py and tests/test_tv_transformers.py), loaded from it,
and saved as a videozoo checkpoint that records the reduced architecture and clip settings: the jobs
then load it by name and weights path, as a user would. The checks are that each job gives what
the engine gives for the same videos and clips.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

import videozoo
from fixtures_util import TRANSFORMER_FIXTURES, write_deepspeed
from videogen import make_video

if not TRANSFORMER_FIXTURES.is_dir():
    pytest.skip(f"transformer fixtures not found at {TRANSFORMER_FIXTURES}", allow_module_level=True)

from test_transformers import V2_ARCH, reduced_directory, tiny_spec, v2_state  # noqa: E402
from test_tv_transformers import reduced_model  # noqa: E402
from test_vjepa2 import load as load_vjepa2, reduced_spec as vjepa2_spec, write_dir as write_vjepa2_dir  # noqa: E402
from videozoo.engine import Engine  # noqa: E402
from videozoo.io import open_video  # noqa: E402
from videozoo.jobs.evaluate import EvalConfig, evaluate, read_records  # noqa: E402
from videozoo.jobs.timeline.run import window_plan  # noqa: E402
from videozoo.jobs.timeline.windows import EPS  # noqa: E402
from videozoo.models.factory import model_from_checkpoint  # noqa: E402
from videozoo.weights.checkpoint import read_checkpoint  # noqa: E402


def _transformers_dir(stem):
    def build(folder):
        path, _, spec = reduced_directory(stem, folder / "official")
        model = model_from_checkpoint(spec, read_checkpoint(path))
        model.input_config = spec.input
        return spec.name, model

    return build


def _videomaev2(folder):
    # The DeepSpeed container of the Kinetics-710 head; the Kinetics-400 entry picks its 400 rows.
    spec = tiny_spec("videomaev2_b_k400", **V2_ARCH)
    model = model_from_checkpoint(spec, read_checkpoint(write_deepspeed(folder / "official.pth", v2_state())))
    model.input_config, model.model_name = spec.input, spec.name
    return spec.name, model


def _vjepa2(folder):
    return vjepa2_spec().name, load_vjepa2(write_vjepa2_dir(folder / "official"))


def _torchvision(name):
    def build(folder):
        model, spec = reduced_model(name, folder)
        return spec.name, model

    return build


# One reduced model per family, each from its official layout.
FAMILIES = {
    "videomae": _transformers_dir("videomae_s_k400"),
    "videomaev2": _videomaev2,
    "timesformer": _transformers_dir("timesformer_b_k400"),
    "vivit": _transformers_dir("vivit_b_k400"),
    "vjepa2": _vjepa2,
    "swin3d": _torchvision("swin3d_t"),
    "mvit_v2": _torchvision("mvit_v2_s"),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def reduced(request, tmp_path_factory):
    """(registry name, videozoo checkpoint of the reduced model, an engine on it)."""
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    name, model = FAMILIES[request.param](folder)
    weights = str(videozoo.save_model(model, folder / f"{name}_reduced.pth"))
    engine = Engine.build(name, weights=weights, precision="fp32")
    # The checkpoint carries the reduced clip, not the registry's full-size one.
    assert engine.input.crop_size == model.input_config.crop_size
    assert engine.input.num_frames == model.input_config.num_frames
    return name, weights, engine


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return [
        make_video(root / f"v{i}.mp4", num_frames=36 + 6 * i, width=48, height=40, pattern="noise", seed=i)
        for i in range(3)
    ]


def _same_top(got, want, tol=1e-5):
    assert [(r["label"], r["index"]) for r in got] == [(r["label"], r["index"]) for r in want]
    for a, b in zip(got, want, strict=True):
        assert abs(a["probability"] - b["probability"]) <= tol


def test_evaluate_writes_metrics_and_scores_each_video_as_predict(reduced, videos, tmp_path):
    name, weights, engine = reduced
    # Labels by index: the reduced V-JEPA 2 head has 7 classes, the others 400 (or 710 -> 400).
    (tmp_path / "list.txt").write_text("".join(f"{v} {i}\n" for i, v in enumerate(videos)))
    out = tmp_path / "eval"
    cfg = EvalConfig(
        model=name, data=str(tmp_path / "list.txt"), out=str(out), weights=weights, workers=0, precision="fp32"
    )
    metrics = evaluate(cfg)
    assert metrics["videos"] == 3 and metrics["evaluated"] == 3 and metrics["failed"] == 0
    assert 0 <= metrics["video_top1"] <= metrics["video_top5"] <= 1
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["evaluated"] == 3 and saved["config"]["model"] == name
    records = read_records(out / "predictions.jsonl")
    assert [r["index"] for r in records] == [0, 1, 2]
    for rec, video in zip(records, videos, strict=True):
        pred = engine.predict(video)
        assert rec["error"] is None and rec["pred"] == int(pred.scores.argmax())
        _same_top(rec["top5"], pred.top_k(5))


def test_timeline_windows_are_the_engine_scores_of_their_clips(reduced, tmp_path):
    name, weights, engine = reduced
    video = make_video(tmp_path / "long.mp4", num_frames=90, fps=30, width=48, height=40, pattern="noise", seed=7)
    out = tmp_path / "tl"
    # One window and stride for every family (TimeSformer's own window is over 4 s).
    result = videozoo.timeline(
        video,
        model=name,
        weights=weights,
        window=1.0,
        stride=0.5,
        top_k=3,
        out=out,
        precision="fp32",
        smooth=1,
        min_segment=0,
    )
    data = json.loads((out / "timeline.json").read_text())
    assert data["duration"] == pytest.approx(3.0) and (out / "timeline.csv").is_file()
    wins = result.windows
    assert len(data["windows"]) == len(wins) == 5 and data["segments"]  # starts 0, 0.5, ..., 2
    assert data["segments"][0]["start"] == 0.0 and data["segments"][-1]["end"] == pytest.approx(3.0)
    t = engine.transform
    # Each window's clip decoded on its own: the whole window, or for recipes that step through
    # frames at a fixed interval (Swin3D's, MViTv2's) one clip's length from its middle. Bounds are
    # sums of floats: a frame within EPS of one counts as on it, as the timeline counts it.
    half = window_plan(engine, 1.0, 0.5).span / 2
    assert (half < 0.5) == (t.temporal.mode == "stride")
    with open_video(video) as v:
        clips = v.get_clips(
            [((w.start + w.end) / 2 - half - EPS, (w.start + w.end) / 2 + half - EPS) for w in wins],
            select=lambda _i, pts: t.select_frames(len(pts), pts, v.fps),
        )
    for w, c, row in zip(wins, clips, data["windows"], strict=True):
        expect = engine.forward(t(c, video_fps=30.0, presampled=True)).mean(0)
        assert torch.from_numpy(w.scores) == pytest.approx(expect, abs=1e-5)
        assert float(expect.sum()) == pytest.approx(1.0, abs=1e-4)
        assert row["top_k"][0]["index"] == int(expect.argmax())


def test_serve_answers_as_the_cli_predicts(reduced, videos, tmp_path, capsys, monkeypatch):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'videozoo[serve]')")
    pytest.importorskip("python_multipart", reason="the serve extra is not installed")
    pytest.importorskip("httpx", reason="httpx (in the test extra) is not installed")
    from fastapi.testclient import TestClient

    from videozoo.cli.main import main
    from videozoo.serve import ServeConfig, ServedModel, create_app

    name, weights, engine = reduced
    video = videos[1]
    monkeypatch.chdir(video.parent)
    argv = ["predict", video.name, "--model", name, "--weights", weights, "--precision", "fp32", "--top-k", "3"]
    assert main([*argv, "--json"]) == 0
    want = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    config = ServeConfig(
        models=(ServedModel(name, weights),), workers=1, max_queue=2, precision="fp32", temp_root=str(tmp_path)
    )
    with TestClient(create_app(config)) as client:
        deadline = time.monotonic() + 120  # the models load in the background once the app starts
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the reduced model did not load in 120 s"
            time.sleep(0.05)
        info = client.get("/v1/models").json()
        served = info["models"][0]["input"]
        assert (served["num_frames"], served["crop_size"]) == (engine.input.num_frames, engine.input.crop_size)
        r = client.post(
            "/v1/predict", files={"video": (video.name, video.read_bytes(), "video/mp4")}, data={"top_k": "3"}
        )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["video"] == video.name and len(got["top_k"]) == 3
    _same_top(got["top_k"], want["top_k"], tol=1e-4)
