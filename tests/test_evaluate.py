"""Predict and evaluate end to end on generated videos with deterministic weights."""

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import videozoo
from videogen import make_video
from videozoo.jobs.evaluate import EvalConfig, evaluate, read_records

MODEL = "x3d_xs"  # the cheapest model of the zoo: 0.9 GFLOPs per view
LABELS = ["abseiling", "air drumming", "archery", "bowling", "zumba"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "x3d_xs.pth"
    # Views of 64 px instead of the registry's 182, carried by the checkpoint's record: the jobs'
    # logic is the same at any size, and the views cost a tenth.
    model = videozoo.create_model(MODEL)
    model.input_config = dataclasses.replace(model.input_config, short_side=72, crop_size=64)
    return str(videozoo.save_model(model, path))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    lines = []
    for i, label in enumerate(LABELS):
        make_video(root / f"v{i}.mp4", num_frames=45 + 10 * i, width=80, height=64, pattern="noise", seed=i)
        lines.append(f"v{i}.mp4 {label.replace(' ', '_')}")
    (root / "broken.mp4").write_bytes(b"not a video at all")
    lines.insert(2, "broken.mp4 archery")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


def _run(weights, dataset, out, **kw):
    cfg = EvalConfig(model=MODEL, data=str(dataset), out=str(out), weights=weights, workers=0, **kw)
    return evaluate(cfg)


def test_evaluate_records_failures_and_writes_outputs(weights, dataset, tmp_path):
    m = _run(weights, dataset, tmp_path / "e", views="10x3")
    assert m["videos"] == 6 and m["evaluated"] == 5 and m["failed"] == 1
    assert "broken.mp4" in m["failures"][0]["error"]
    assert m["views_scored"] == 150 and 0 <= m["video_top1"] <= 1 and m["video_top5"] >= m["video_top1"]
    recs = read_records(tmp_path / "e" / "predictions.jsonl")
    assert [r["index"] for r in recs] == list(range(6))
    assert all(len(r["top5"]) == 5 for r in recs if r["error"] is None)
    assert (tmp_path / "e" / "confusion_matrix.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["config"]["views"] == "10x3"


def test_resume_after_kill_gives_same_metrics_without_recomputing(weights, dataset, tmp_path, monkeypatch):
    full = _run(weights, dataset, tmp_path / "full")
    out = tmp_path / "killed"
    _run(weights, dataset, out)
    pred = out / "predictions.jsonl"
    lines = pred.read_text().splitlines(keepends=True)
    pred.write_text("".join(lines[:3]) + lines[3][:25])  # killed while writing the 4th line
    (out / "metrics.json").unlink()

    import videozoo.engine.engine as eng

    seen = []
    real = eng.load_views
    monkeypatch.setattr(eng, "load_views", lambda path, *a, **k: seen.append(Path(path).name) or real(path, *a, **k))
    resumed = _run(weights, dataset, out, resume=True)
    assert sorted(seen) == ["v2.mp4", "v3.mp4", "v4.mp4"]  # indices 3, 4, 5 only
    for key in ("video_top1", "video_top5", "clip_top1", "mean_class_accuracy", "evaluated", "failed"):
        assert resumed[key] == full[key]
    assert [r["index"] for r in read_records(pred)] == list(range(6))


def test_two_processes_evaluate_each_video_once_with_equal_metrics(weights, dataset, tmp_path):
    single = _run(weights, dataset, tmp_path / "one")
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        "-m",
        "videozoo",
        "evaluate",
        "--model",
        MODEL,
        "--weights",
        weights,
        "--data",
        str(dataset),
        "--out",
        str(out),
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = read_records(out / "predictions.jsonl")
    assert [r["index"] for r in recs] == list(range(6))
    two = json.loads((out / "metrics.json").read_text())
    assert two["world_size"] == 2
    for key in ("video_top1", "video_top5", "clip_top1", "mean_class_accuracy", "evaluated", "failed"):
        assert two[key] == single[key]
    assert not list(out.glob("predictions.rank*"))


def test_predict_cli_json_and_error_entry(weights, dataset, capsys):
    from videozoo.cli import main

    root = dataset.parent
    rc = main(
        [
            "predict",
            str(root / "v0.mp4"),
            str(root / "broken.mp4"),
            str(root / "v1.mp4"),
            "--model",
            MODEL,
            "--weights",
            weights,
            "--json",
            "--top-k",
            "3",
            "--batch-size",
            "1",
        ]
    )
    assert rc == 1
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(e["video"]).name for e in entries] == ["v0.mp4", "broken.mp4", "v1.mp4"]
    assert "broken.mp4" in entries[1]["error"]
    good = entries[0]
    assert good["views"] == "1x1" and len(good["top_k"]) == 3 and good["seconds"] > 0
    assert set(good["top_k"][0]) == {"label", "index", "probability"}


def test_predict_python_api_matches_unoptimised_model(weights, dataset):
    from videozoo.engine import Engine

    video = str(dataset.parent / "v1.mp4")
    top = videozoo.predict(video, MODEL, weights=weights, views="10x3", top_k=5, precision="fp32")
    assert len(top) == 5 and all(isinstance(lbl, str) for lbl, _ in top)
    fast = Engine.build(MODEL, weights=weights, views="10x3", precision="fp32").predict(video)
    plain = Engine.build(MODEL, weights=weights, views="10x3", precision="fp32", optimize=False).predict(video)
    torch.testing.assert_close(fast.view_scores, plain.view_scores, rtol=1e-4, atol=1e-6)
    assert [p for _, p in top] == pytest.approx([r["probability"] for r in fast.top_k(5)], rel=1e-5)


def test_bf16_scores_close_to_fp32(weights, dataset):
    from videozoo.engine import Engine

    video = str(dataset.parent / "v2.mp4")
    fp32 = Engine.build(MODEL, weights=weights, views="2x3", precision="fp32").predict(video).view_scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emulated where the CPU has no native bf16
        bf16 = Engine.build(MODEL, weights=weights, views="2x3", precision="bf16").predict(video).view_scores
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    torch.testing.assert_close(bf16.sum(1), torch.ones(6), atol=1e-5, rtol=0)  # softmax taken in float32
    assert (bf16 - fp32).abs().max() < 0.02 * fp32.max()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_keep_freed_memory_switch():
    code = "from videozoo.engine.optimize import keep_freed_memory as k; print(k())"

    def run(env):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, check=True
        )
        return proc.stdout.strip()

    import platform

    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert run({}) == expected
    assert run({"VIDEOZOO_KEEP_FREED_MEMORY": "0"}) == "False"
