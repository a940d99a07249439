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
    (
        "its own input by another name",
        lambda src, t: src.parent / "." / ".." / src.parent.name / src.name,
        "is the input checkpoint itself",
    ),
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


# -- bad arguments: exit status 2, one message, no traceback, for every subcommand ---------------------

# (flag, bad value, words the message holds)
BAD_ARGUMENTS = [
    ("--top-k", "0", "must be at least 1"),
    ("--top-k", "-3", "must be at least 1"),
    ("--batch-size", "0", "must be at least 1"),
    ("--batch-size", "-2", "must be at least 1"),
    ("--batch-size", "many", "'many'"),
    ("--workers", "-1", "0 or more"),
    ("--num-workers", "-1", "0 or more"),
    ("--epochs", "0", "epochs must be at least 1"),
    ("--epochs", "-2", "epochs must be at least 1"),
    ("--limit", "0", "must be at least 1"),
    ("--views", "3", "3"),
    ("--views", "2x2", "2x2"),
    ("--views", "tenxthree", "tenxthree"),
    ("--model", "x3d_xss", "did you mean x3d_xs"),
    ("--threads", "0", "must be at least 1"),
    ("--videos-per-class", "0", "must be at least 1"),
    ("--frames", "-1", "must be at least 1"),
]

# Arguments that make the rest of a subcommand's line valid, so that only the bad flag is wrong.
VALID = {
    "predict": ["v.mp4"],
    "evaluate": ["--data", "list.txt", "--out", "{out}"],
    "features": ["--out", "{out}"],
    "train": ["--model", "x3d_xs", "--data", "list.txt", "--out", "{out}"],
    "convert": ["in.pth", "out.pth"],
    "synth": ["--out", "{out}"],
}


def _status(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def _subcommands(capsys) -> list[str]:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    return re.search(r"\{([\w,-]+)\}", text).group(1).split(",")


def _flags(command, capsys) -> set[str]:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return set(re.findall(r"(--[\w-]+)", capsys.readouterr().out))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    # Should a bad value ever get past the checks, nothing is downloaded or written outside tmp_path.
    monkeypatch.setenv("VIDEOZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIDEOZOO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


def test_every_subcommand_answers_bad_arguments_with_one_message(capsys, tmp_path, offline):
    commands = _subcommands(capsys)
    assert {"models", "convert", "predict", "evaluate", "features", "synth", "train", "demo"} <= set(commands)
    tried = 0
    for command in commands:
        flags = _flags(command, capsys)
        for flag, value, words in BAD_ARGUMENTS:
            if flag not in flags:
                continue
            valid = [a.replace("{out}", str(tmp_path / f"out-{command}")) for a in VALID.get(command, [])]
            code, err = _status([command, *valid, flag, value], capsys)
            where = f"videozoo {command} {flag} {value}"
            assert code == 2, f"{where}: exit status {code}\n{err}"
            assert "Traceback" not in err and len([line for line in err.splitlines() if "error:" in line]) == 1, where
            if command in VALID:
                assert words in err and (flag in err or flag[2:].replace("-", "_") in err), f"{where}: {err}"
                assert not (tmp_path / f"out-{command}").exists(), f"{where} wrote its output folder"
            tried += 1
    assert tried >= 25


@pytest.mark.parametrize("command", ["evaluate", "features"])
def test_zero_workers_is_accepted(command, capsys):
    from videozoo.cli.main import build_parser

    args = build_parser().parse_args([command, *VALID[command], "--workers", "0"])
    assert args.workers == 0


def test_a_real_process_exits_2_without_a_traceback(tmp_path):
    env = {
        **os.environ,
        "VIDEOZOO_OFFLINE": "1",
        "VIDEOZOO_HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    for argv in (
        ["-m", "videozoo", "predict", "v.mp4", "--model", "x3d_xss"],
        ["-m", "videozoo.train", "--model", "x3d_xs", "--data", "l.txt", "--out", str(tmp_path / "o"), "--epochs", "0"],
    ):
        proc = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len([line for line in proc.stderr.splitlines() if "error:" in line]) == 1
