"""Zero-shot jobs on a small X-CLIP in the official layout: timelines over labels written at run time
(files and standard input, "none of these"), and the embedding index with its text search."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import videozoo
from videogen import make_video
from videozoo.cli.main import main
from videozoo.jobs.timeline import NONE_LABEL, find_segments, smooth_scores
from videozoo.models.video_text.xclip import XClip
from xclip_small import register_small, write_small

LABELS = ["dog running", "person cooking", "car"]


@pytest.fixture
def small(tmp_path_factory, monkeypatch):
    """The registry entry `xclip_small` and its weights folder."""
    register_small(monkeypatch)
    return write_small(tmp_path_factory.mktemp("xclip") / "small")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(make_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=60, pattern="noise", seed=3))


@pytest.fixture(scope="module")
def ts_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("ts") / "v.ts", container="mpegts", num_frames=60, pattern="noise")


@contextlib.contextmanager
def stdin_from(data: bytes, tmp_path):
    """File descriptor 0 reads ``data`` (FFmpeg's pipe:0 reads the descriptor itself)."""
    src = tmp_path / "stdin.bin"
    src.write_bytes(data)
    saved = os.dup(0)
    try:
        with open(src, "rb") as f:
            os.dup2(f.fileno(), 0)
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def _count_text_passes(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = XClip.encode_text
    monkeypatch.setattr(XClip, "encode_text", lambda self, texts: calls.append(1) or original(self, texts))
    return calls


# -- timeline over labels ------------------------------------------------------------------------------


def test_timeline_over_labels_scores_windows_as_classify_does(small, video, monkeypatch):
    calls = _count_text_passes(monkeypatch)
    result = videozoo.timeline(
        video, model="xclip_small", weights=small, labels=",".join(LABELS), precision="fp32", top_k=3
    )
    assert calls == [1]  # the label set is embedded once, not per window
    assert result.class_names == LABELS and result.model == "xclip_small"
    assert len(result.windows) > 5 and all(w.none is None for w in result.windows)
    assert {s.label for s in result.segments} <= set(LABELS)
    for w in result.windows:
        assert sorted(s.label for s in w.top_k) == sorted(LABELS)
        assert float(w.scores.sum()) == pytest.approx(1.0, abs=1e-5)
    # A window's probabilities are the model's over the templated labels, on that window's views.
    run = videozoo.timeline_stream(video, model="xclip_small", weights=small, labels=LABELS, precision="fp32")
    seen = []
    forward = run.engine.forward
    monkeypatch.setattr(
        run.engine, "forward", lambda views, output="scores": seen.append(views) or forward(views, output)
    )
    with run:
        first = next(iter(run))
    assert first.scores == pytest.approx(result.windows[0].scores, abs=1e-6)
    with torch.no_grad():
        logits = run.engine.model(seen[0][:1].float(), texts=[f"a video of {label}." for label in LABELS])
    assert first.scores == pytest.approx(logits.softmax(-1)[0].numpy(), abs=1e-5)
    # A model given with its label set is taken as a classifier over those labels.
    labelled = videozoo.create_model("xclip_small", weights=small).set_labels(LABELS, template="a video of {}.")
    again = videozoo.timeline(video, model=labelled, precision="fp32", top_k=3)
    assert again.class_names == LABELS
    assert again.windows[0].scores == pytest.approx(result.windows[0].scores, abs=1e-5)
    segments_json = result.to_json()["segments"]
    assert segments_json[0]["start"] == 0 and "none_threshold" not in result.to_json()


def test_none_threshold_labels_unlikely_windows_none(small, video):
    plain = videozoo.timeline(video, model="xclip_small", weights=small, labels=LABELS, precision="fp32")
    best = np.array([w.scores.max() for w in plain.windows])
    p = float(np.median(best))  # some windows above, some under (a random small model is near 1/3)
    assert best.min() < p <= best.max() and p > 1 / 3
    result = videozoo.timeline(
        video, model="xclip_small", weights=small, labels=LABELS, precision="fp32", none_threshold=p, min_segment=0
    )
    assert [w.none for w in result.windows] == (best < p).tolist()
    assert result.class_names == [*LABELS, NONE_LABEL]
    # The segments follow the smoothed probabilities with "none" standing at the threshold.
    smoothed = smooth_scores(np.stack([w.scores for w in plain.windows]), 3).max(1)
    for s in result.segments:
        inside = [i for i, w in enumerate(result.windows) if s.start <= w.center < s.end]
        if s.label == NONE_LABEL:
            assert (smoothed[inside] < p).all() and s.score < p
        else:
            assert (smoothed[inside] >= p).all()
    data = result.to_json()
    assert data["none_threshold"] == p and all("none" in w for w in data["windows"])
    everything = videozoo.timeline(
        video, model="xclip_small", weights=small, labels=LABELS, precision="fp32", none_threshold=0.99
    )
    assert [(s.label, s.start, s.end) for s in everything.segments] == [(NONE_LABEL, 0.0, everything.duration)]


def test_none_joins_the_segments_at_the_threshold():
    # Label 0 for 10 s, nothing likely for 10 s, label 1 for 10 s; windows every second.
    centers = np.arange(30) + 0.5
    p = np.full((30, 2), 0.5)
    p[:10] = [0.9, 0.1]
    p[20:] = [0.1, 0.9]
    with_none = np.concatenate([p, np.full((30, 1), 0.7)], axis=1)
    segments = find_segments(
        centers, with_none, start=0, end=30, min_segment=0, class_names=["a", "b", NONE_LABEL], frame_at=int
    )
    # Each boundary is where the label's smoothed probability crosses the threshold (0.7, half-way).
    assert [(s.label, round(s.start, 6), round(s.end, 6)) for s in segments] == [
        ("a", 0, 10),
        (NONE_LABEL, 10, 20),
        ("b", 20, 30),
    ]


def test_stream_timeline_over_labels_prints_windows(small, ts_video, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", "xclip_small", "--weights", small, "--labels", "dog running,car", "--precision", "fp32"]
    with stdin_from(Path(ts_video).read_bytes(), tmp_path):
        rc = main(["timeline", "-", *args, "--out", str(out), "--none-threshold", "0.99", "--top-k", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "xclip_small over 2 labels" in captured.err
    lines = [json.loads(x) for x in captured.out.splitlines()]
    data = json.loads((out / "timeline.json").read_text())
    assert lines == data["windows"] and len(lines) > 2 and data["video"] == "-"
    assert all(w["none"] is True and w["top_k"][0]["label"] in ("dog running", "car") for w in lines)
    assert [s["label"] for s in data["segments"]] == [NONE_LABEL]
    assert "none" in (out / "timeline.csv").read_text()


def _labels_file(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("none\ncar\n")
    return ["--labels-file", str(f), "--none-threshold", "0.6"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--labels", "a,b", "--none-threshold", "0.5"], "--none-threshold must be a probability above 1/2"),
        (["--labels", "a,b", "--none-threshold", "1"], "--none-threshold must be a probability"),
        (["--labels", "a,b", "--none-threshold", "nan"], "--none-threshold must be a probability"),
        (["--labels", "a,a"], "--labels: labels given more than once: a"),
        (["--labels", " , "], "--labels: no labels given"),
        (["--labels", "a,b", "--template", "a video"], "exactly one {}"),
        (["--labels-file", "__missing__"], "--labels-file: "),
        (_labels_file, "a label is called 'none'"),
        ([], "xclip_small: a video-text model scores labels written at run time"),
        (["--model", "x3d_xs", "--weights", "none", "--labels", "a,b"], "--labels: x3d_xs is a classifier"),
        (["--model", "x3d_xs", "--weights", "none", "--template", "{}"], "--template is the prompt"),
    ],
)
def test_timeline_label_errors(small, video, tmp_path, capsys, extra, message):
    extra = (
        extra(tmp_path) if callable(extra) else [str(tmp_path / "nope.txt") if e == "__missing__" else e for e in extra]
    )
    rc = main(["timeline", video, "--model", "xclip_small", "--weights", small, "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err
    assert len([ln for ln in err.splitlines() if "error" in ln]) == 1
    assert not (tmp_path / "o" / "timeline.json").exists()


# -- embed and search ----------------------------------------------------------------------------------


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for seed in (1, 2):
        make_video(folder / f"c{seed}.mp4", num_frames=40, pattern="noise", seed=seed)
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_embed_writes_unit_vectors_per_window_and_search_ranks_them(small, clips, tmp_path, monkeypatch):
    calls = _count_text_passes(monkeypatch)
    index = tmp_path / "index"
    summary = videozoo.embed(
        [clips], index, model="xclip_small", weights=small, labels=LABELS, precision="fp32", stride=0.2
    )
    assert calls == [1, 1]  # the engine's stand-in label (it sizes its batches), then the texts: once each
    meta = json.loads((index / "rows.json").read_text())
    vectors = np.load(index / "vectors.npy")
    texts = np.load(index / "texts.npy")
    assert summary == {"videos": 2, "failed": 0, "rows": len(meta["rows"]), "dim": 8, "out": str(index)}
    assert vectors.shape == (len(meta["rows"]), 8) and vectors.dtype == np.float32 and texts.shape == (3, 8)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert meta["model"] == "xclip_small" and len(meta["weights_sha256"]) == 64
    assert meta["videozoo_version"] == videozoo.__version__ and meta["window"] == pytest.approx(8 / 30)
    assert [v["video"] for v in meta["videos"]] == [str(clips / "c1.mp4"), str(clips / "c2.mp4")]
    first = meta["rows"][0]
    assert set(first) == {"video", "start", "end", "start_frame", "end_frame"} and first["start"] == 0
    a, b = meta["videos"][0]["rows"]
    # Windows every 0.2 s (the frame nearest), the last one ending at the video's end.
    starts = [r["start"] for r in meta["rows"][a:b]]
    assert starts[:-1] == pytest.approx([0.2 * i for i in range(b - a - 1)], abs=0.04)
    assert meta["rows"][b - 1]["end"] == pytest.approx(40 / 30, abs=1e-3)
    # The rows are the windows a timeline with the same stride scores.
    timeline = videozoo.timeline(
        str(clips / "c1.mp4"), model="xclip_small", weights=small, labels=LABELS, precision="fp32", stride=0.2
    )
    assert [w.start for w in timeline.windows] == pytest.approx([r["start"] for r in meta["rows"][a:b]], abs=1e-5)
    assert [w.end_frame for w in timeline.windows] == [r["end_frame"] for r in meta["rows"][a:b]]
    model = videozoo.create_model("xclip_small", weights=small)

    # Search: a stored text uses its vector; another is embedded by the index's model.
    hits = videozoo.search(index, "car", top=4)
    expected = vectors @ texts[2]
    assert [h["row"] for h in hits] == np.argsort(-expected, kind="stable")[:4].tolist()
    assert hits[0]["score"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert set(hits[0]) == {"video", "start", "end", "start_frame", "end_frame", "row", "score"}
    other = videozoo.search(index, "a boat", top=100)
    with torch.no_grad():
        q = torch.nn.functional.normalize(model.encode_text(["a video of a boat."]), dim=-1)[0].numpy()
    assert [h["row"] for h in other] == np.argsort(-(vectors @ q), kind="stable").tolist()
    assert len(other) == len(vectors)


def test_embed_resumes_and_search_cli(small, clips, tmp_path, capsys):
    index = tmp_path / "index"
    common = ["--model", "xclip_small", "--weights", small, "--precision", "fp32", "--out", str(index)]
    assert main(["embed", str(clips / "c1.mp4"), str(clips / "c2.mp4"), *common, "--labels", "car,dog"]) == 0
    before = np.load(index / "vectors.npy")
    records = (index / "index.jsonl").read_text()
    # --resume with the same settings embeds nothing again.
    assert (
        main(["embed", str(clips / "c1.mp4"), str(clips / "c2.mp4"), *common, "--labels", "car,dog", "--resume"]) == 0
    )
    err = capsys.readouterr().err
    assert "2 of 2 videos already embedded" in err
    assert (index / "index.jsonl").read_text() == records
    assert np.array_equal(np.load(index / "vectors.npy"), before)
    # Other settings are refused with the differences listed.
    assert main(["embed", str(clips / "c1.mp4"), str(clips / "c2.mp4"), *common, "--stride", "0.1", "--resume"]) == 2
    assert "stride" in capsys.readouterr().err
    assert main(["search", str(index), "dog", "--top", "3", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert main(["search", str(index), "dog", "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split()[-1] == hits[0]["video"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["embed", "__tmp__/missing.mp4"], "missing.mp4: no such video file or folder"),
        (["embed", "__tmp__/empty_dir"], "a folder without video files"),
        (["embed", "__video__", "--model", "x3d_xs", "--weights", "none"], "x3d_xs: a classifier with fixed classes"),
        (["embed", "__video__", "--labels", "a,a"], "labels given more than once"),
        (["embed", "__video__", "__video__"], "videos given more than once"),
        (["search", "__tmp__/nothing", "dog"], "no such index folder"),
        (["search", "__tmp__/empty_dir", "dog"], "not an index"),
        (["search", "__tmp__/empty_dir", "  "], "the query is empty"),
    ],
)
def test_embed_and_search_errors(small, video, tmp_path, capsys, argv, message):
    (tmp_path / "empty_dir").mkdir()
    argv = [a.replace("__tmp__", str(tmp_path)).replace("__video__", video) for a in argv]
    if argv[0] == "embed":
        argv += ["--out", str(tmp_path / "index")]
        if "--model" not in argv:
            argv += ["--model", "xclip_small", "--weights", small]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err


def test_a_damaged_index_is_named(small, video, tmp_path):
    index = tmp_path / "index"
    videozoo.embed(video, index, model="xclip_small", weights=small, precision="fp32")
    np.save(index / "vectors.npy", np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="does not match rows.json"):
        videozoo.search(index, "dog")
    (index / "rows.json").write_text("{")
    with pytest.raises(ValueError, match="a damaged index"):
        videozoo.search(index, "dog")


def test_embed_lists_an_undecodable_video_and_keeps_the_others(small, video, tmp_path, capsys):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    index = tmp_path / "index"
    rc = main(["embed", video, str(garbage), "--model", "xclip_small", "--weights", small, "--out", str(index)])
    assert rc == 1, capsys.readouterr().err
    meta = json.loads((index / "rows.json").read_text())
    assert meta["videos"][0]["error"] is None and meta["videos"][1]["rows"] is None
    assert "garbage.mp4" in meta["videos"][1]["error"]
    assert {r["video"] for r in meta["rows"]} == {video}
    assert len(np.load(index / "vectors.npy")) == len(meta["rows"]) == meta["videos"][0]["rows"][1]
