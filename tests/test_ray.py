"""Runs over Ray (``--ray``) against the single-process jobs, on a local Ray cluster started here."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")  # ray[data] brings it

import videozoo  # noqa: E402
from videogen import make_video  # noqa: E402
from videozoo.cli.main import main  # noqa: E402
from videozoo.jobs import dense, features, ray_run  # noqa: E402
from videozoo.jobs.records import read_records  # noqa: E402

MODEL = "x3d_xs"
ROOT = Path(videozoo.__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def cluster(faults):
    # Two CPUs: one decoding task and one engine actor at a time. The workers import videozoo from
    # this checkout and run the fault hook of tests/ray_faults.py (inert without a marker file).
    ray.init(
        num_cpus=2,
        object_store_memory=256 * 2**20,
        include_dashboard=False,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
                "VIDEOZOO_TEST_FAULTS": str(faults),
                "VIDEOZOO_BACKEND": "torch",
            },
            "worker_process_setup_hook": "ray_faults.install",
        },
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "x3d_xs.pth"
    model = videozoo.create_model(MODEL)  # 64 px views: the jobs' logic at a tenth of the cost
    model.input_config = dataclasses.replace(model.input_config, short_side=72, crop_size=64)
    return str(videozoo.save_model(model, path))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = []
    for i in range(3):
        make_video(root / f"v{i}.mp4", num_frames=24 + 9 * i, width=80, height=64, pattern="noise", seed=i)
        paths.append(str(root / f"v{i}.mp4"))
    (root / "broken.mp4").write_bytes(b"not a video at all")
    paths.insert(1, str(root / "broken.mp4"))
    return paths


def _dense_cfg(out, videos, weights):
    return dense.DenseConfig(model=MODEL, out=str(out), clip_frames=4, stride=3, videos=videos, weights=weights)


@pytest.fixture(scope="module")
def dense_reference(tmp_path_factory, videos, weights):
    out = tmp_path_factory.mktemp("dense_ref")
    summary = dense.extract_dense(_dense_cfg(out, videos, weights))
    assert summary["computed"] == 3 and summary["failed"] == 1
    return out


def _assert_same_dense(ref: Path, out: Path, videos: list[str]) -> None:
    for v in videos:
        name = Path(v).stem
        if name == "broken":
            assert not (out / "broken.npy").exists()
            continue
        a, b = np.load(ref / f"{name}.npy"), np.load(out / f"{name}.npy")
        assert a.shape == b.shape and a.shape[0] > 0
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
        assert json.loads((out / f"{name}.json").read_text()) == json.loads((ref / f"{name}.json").read_text())
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]  # no half-written file left


def _records(out: Path) -> dict[str, dict]:
    recs = read_records(out / "index.jsonl")
    names = [r["name"] for r in recs]
    assert len(names) == len(set(names)), f"a video recorded twice: {names}"
    return {r["name"]: r for r in recs}


def test_dense_equals_single_process_and_second_run_skips(cluster, videos, weights, dense_reference, tmp_path):
    out = tmp_path / "ray"
    summary = ray_run.extract_dense(_dense_cfg(out, videos, weights), ray_run.RayOptions())
    assert summary == {**summary, "videos": 4, "computed": 3, "failed": 1, "skipped": 0}
    _assert_same_dense(dense_reference, out, videos)
    recs, ref = _records(out), _records(dense_reference)
    assert recs == ref  # the same entries, the broken video's error included
    assert "broken.mp4" in recs["broken"]["error"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("v*.*")}

    # The second run, asked for the run's Parquet table, builds it from the finished outputs.
    cfg = dataclasses.replace(_dense_cfg(out, videos, weights), parquet=True)
    again = ray_run.extract_dense(cfg, ray_run.RayOptions())
    assert again["computed"] == 0 and again["skipped"] == 3 and again["failed"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("v*.*")} == stamps  # nothing rewritten
    table = pq.read_table(again["table"])
    finished = [Path(v).stem for v in videos if (out / f"{Path(v).stem}.npy").exists()]
    assert table.column("name").to_pylist() == [n for n in finished for _ in np.load(out / f"{n}.npy")]
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors, np.concatenate([np.load(out / f"{n}.npy") for n in finished]))


def test_killed_workers_are_retried_without_loss_or_doubles(
    cluster, faults, videos, weights, dense_reference, tmp_path, capsys
):
    (faults / "decode").write_text("")
    (faults / "engine").write_text("")
    out = tmp_path / "ray"
    # Through the command line this time: its --ray reaches the same job.
    args = ["features", "--dense", "--clip-frames", "4", "--stride", "3", "--model", MODEL, "--weights", weights]
    assert main([*args, *videos, "--out", str(out), "--ray"]) == 1  # the broken video
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    # Both processes really died: a decoding task and an engine actor, each retried by Ray.
    assert (faults / "decode.died").exists() and (faults / "engine.died").exists()
    assert summary["computed"] == 3 and summary["failed"] == 1
    _assert_same_dense(dense_reference, out, videos)
    recs = _records(out)
    assert sorted(recs) == ["broken", "v0", "v1", "v2"]
    assert all(recs[n]["error"] is None for n in ("v0", "v1", "v2"))


def test_pooled_features_equal_single_process(cluster, videos, weights, tmp_path):
    def cfg(out):
        return features.FeatureConfig(model=MODEL, out=str(out), videos=videos, weights=weights, views="2x1", workers=0)

    ref = features.extract_features(cfg(tmp_path / "ref"))
    got = ray_run.extract_features(cfg(tmp_path / "ray"), ray_run.RayOptions())
    assert got == ref and ref["failed"] == 1 and ref["clips"] == 6
    for name in ("clip_features.npy", "video_features.npy"):
        np.testing.assert_allclose(np.load(tmp_path / "ray" / name), np.load(tmp_path / "ref" / name), atol=1e-4)
    index = json.loads((tmp_path / "ray" / "index.json").read_text())
    assert index == json.loads((tmp_path / "ref" / "index.json").read_text())
    assert sorted(r["index"] for r in read_records(tmp_path / "ray" / "index.jsonl")) == [0, 1, 2, 3]
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "parts").iterdir()}
    assert len(stamps) == 3

    again = ray_run.extract_features(dataclasses.replace(cfg(tmp_path / "ray"), resume=True), ray_run.RayOptions())
    assert again == ref  # gathered again from the parts, none computed
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "parts").iterdir()} == stamps
    assert len(read_records(tmp_path / "ray" / "index.jsonl")) == 4


def _predict(args, capsys):
    code = main(["predict", *args, "--json", "--top-k", "3"])
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for e in entries:
        e.pop("seconds", None)  # the time each run took
    return code, entries


def test_predict_json_equals_single_process(cluster, videos, weights, capsys):
    common = [*videos, "--model", MODEL, "--weights", weights]
    code, ref = _predict(common, capsys)
    code_ray, got = _predict([*common, "--ray"], capsys)
    assert code == code_ray == 1  # the broken video
    assert [e["video"] for e in got] == videos
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        assert a.keys() == b.keys()
        if "error" in b:
            assert a == b
            continue
        assert [r["label"] for r in a["top_k"]] == [r["label"] for r in b["top_k"]]
        for x, y in zip(a["top_k"], b["top_k"], strict=True):
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-4)
        assert {k: v for k, v in a.items() if k != "top_k"} == {k: v for k, v in b.items() if k != "top_k"}


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["features", "v.mp4", "--out", "o", "--ray-actors", "2"], "--ray-actors"),
        (["features", "v.mp4", "--out", "o", "--ray", "--workers", "2"], "--workers"),
        (["features", "v.mp4", "--out", "o", "--ray", "--stall-timeout", "5"], "--stall-timeout"),
        (
            [
                "features",
                "v.mp4",
                "--out",
                "o",
                "--dense",
                "--clip-frames",
                "4",
                "--stride",
                "4",
                "--ray",
                "--workers",
                "1",
            ],
            "--workers",
        ),
        (["predict", "v.mp4", "--ray", "--stall-timeout", "5"], "--stall-timeout"),
        (["predict", "v.mp4", "--ray-actors", "1"], "--ray-actors"),
        (["predict", "v.mp4", "--model", MODEL, "--weights", "none", "--ray", "--device", "cuda:1"], "--device"),
    ],
)
def test_bad_flag_combinations_name_the_flag(cluster, args, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"videozoo {args[0]}: error: {flag}"), err


def test_predict_joins_a_cluster_by_its_address(cluster, videos, weights):
    # Another process, pointed at this cluster: it joins it (no Ray of its own) and leaves it running.
    address = ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "videozoo", "predict", videos[0], "--model", MODEL, "--weights", weights]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIDEOZOO_BACKEND": "torch"}
    done = subprocess.run([*cmd, "--json", "--ray", address], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    entry = json.loads(done.stdout.splitlines()[-1])
    assert entry["video"] == videos[0] and len(entry["top_k"]) == 5
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2


def test_import_videozoo_does_not_import_ray():
    code = "import sys, videozoo, videozoo.cli.main, videozoo.jobs.ray_run; assert 'ray' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
