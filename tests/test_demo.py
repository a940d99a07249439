"""The offline demo, end to end, in its quick form: every step runs and the report is complete."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from videozoo.cli import main


@pytest.fixture
def offline(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("VIDEOZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIDEOZOO_OFFLINE", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_quick_demo_writes_the_report(tmp_path, offline, capsys):
    out = tmp_path / "demo-output"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "# videozoo demo" in printed and "true: move_left" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["finetune_accuracy"] <= 1.0
    assert summary["finetune_classes"] == ["move_up_left", "move_up_right", "move_down_left", "move_down_right"]
    for key in ("heldout_clip_mode", "heldout_multi_view"):
        assert summary[key]["evaluated"] == 16 and summary[key]["failed"] == 0, summary[key]
    assert summary["heldout_multi_view"]["views"] == "3x3"
    assert [p["label"] for p in summary["predictions"]] == ["move_left", "zoom_in"]
    assert all(len(p["top5"]) == 5 for p in summary["predictions"])
    report = (out / "report.md").read_text()
    for picture in (
        "clips/clips.png",
        "finetune/training.png",
        "eval_multi-view/confusion_matrix.png",
        "eval_finetune/confusion_matrix.png",
        "timeline/timeline.png",
    ):
        assert f"]({picture})" in report and (out / picture).is_file(), picture
    assert set(summary["timings"]) >= {"predict", "fine-tune", "evaluate fine-tuned model", "timeline"}
    story = summary["timeline"]
    assert [t["label"] for t in story["true"]] == ["move_left", "zoom_in"]
    assert story["segments"] and story["segments"][-1]["end"] == pytest.approx(6.0, abs=0.1)
    for name in ("timeline.json", "timeline.csv", "overlay.mp4"):
        assert (out / "timeline" / name).is_file(), name
    assert "## Timeline of a longer video" in report


def test_a_second_demo_in_the_same_folder_starts_afresh_and_a_foreign_folder_is_refused(tmp_path):
    from videozoo.cli.demo import DEMO_MARK, prepare_demo_folder

    out = tmp_path / "demo-output"
    prepare_demo_folder(out)  # new
    (out / "finetune").mkdir()
    (out / "finetune" / "checkpoint_last.pth").write_bytes(b"x")  # what stopped a second `make demo`
    (out / "summary.json").write_text("{}")
    (out / "notes.txt").write_text("mine")  # not the demo's: kept
    prepare_demo_folder(out)
    assert not (out / "finetune").exists() and not (out / "summary.json").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / DEMO_MARK).is_file()

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="did not write"):
        prepare_demo_folder(foreign)
    assert (foreign / "a.jpg").exists()
    afile = tmp_path / "f"
    afile.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        prepare_demo_folder(afile)
