"""The command line: `videozoo convert` into a bad place writes nothing; every subcommand answers bad
arguments with exit status 2 and one message, never a traceback."""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import videozoo
from videozoo.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    spec = videozoo.get_spec("x3d_xs")
    model = spec.build(num_classes=3, width_factor=0.5, depth_factor=0.5, head_width=32)
    model.model_name, model.class_names, model.input_config = "x3d_xs", ["a", "b", "c"], spec.input
    return videozoo.save_model(model, tmp_path_factory.mktemp("ckpt") / "small.pth")


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def _unwritable(tmp_path: Path) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("")
    except OSError:
        return folder / "out.pth"
    (folder / "probe").unlink()
    folder.chmod(0o700)
    for candidate in ("/sys", "/proc"):  # root may write anywhere else
        try:
            os.close(os.open(f"{candidate}/videozoo-probe", os.O_CREAT | os.O_WRONLY))
        except OSError:
            return Path(candidate) / "out.pth"
    pytest.skip("no folder here refuses writes")


# (how the output is chosen, words in the one error)
BAD_OUTPUT = [
    ("a folder", lambda src, t: t, "is a folder; name the output file"),
    ("its own input", lambda src, t: src, "is the input checkpoint itself"),
    ("its own input by another name", lambda src, t: src.parent / "." / ".." / src.parent.name / src.name,
     "is the input checkpoint itself"),
    ("under a file", lambda src, t: (t / "f").write_text("x") and t / "f" / "out.pth", "is a file, so the output"),
    ("unwritable", lambda src, t: _unwritable(t), "cannot write in"),
    ("no checkpoint suffix", lambda src, t: t / "out.bin", "must end in .pth, .pt or .safetensors"),
]


@pytest.mark.parametrize("make_dst, words", [c[1:] for c in BAD_OUTPUT], ids=[c[0] for c in BAD_OUTPUT])
def test_convert_into_a_bad_place_writes_nothing(checkpoint, tmp_path, capsys, make_dst, words):
    dst = make_dst(Path(checkpoint), tmp_path)
    before, source = _listing(tmp_path), Path(checkpoint).read_bytes()
    assert main(["convert", str(checkpoint), str(dst)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("error:") == 1 and "Traceback" not in err
    assert _listing(tmp_path) == before and Path(checkpoint).read_bytes() == source


def test_convert_is_atomic_when_the_write_fails(checkpoint, tmp_path, capsys, monkeypatch):
    dst = tmp_path / "out.pth"
    dst.write_bytes(b"the previous file")
    real = torch.save

    def save(obj, f, *a, **k):
        real(obj, f, *a, **k)
        Path(f).write_bytes(Path(f).read_bytes()[:100])  # half written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)
    assert main(["convert", str(checkpoint), str(dst)]) == 1
    err = capsys.readouterr().err
    assert str(dst) in err and "No space left on device" in err and err.count("error:") == 1
    assert dst.read_bytes() == b"the previous file" and sorted(p.name for p in tmp_path.iterdir()) == ["out.pth"]
    monkeypatch.undo()
    assert main(["convert", str(checkpoint), str(tmp_path / "ok.safetensors")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.safetensors", "out.pth"]
