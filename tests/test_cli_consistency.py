"""The same words mean the same everywhere: every subcommand and Python API that takes weights reads
`default`, `none`, a published key or a path alike; the common flags share names and meanings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import videozoo
from videogen import make_video
from videozoo.cli.flags import NOTES, find_flag, flags_markdown
from videozoo.cli.main import build_parser, main
from videozoo.data.synth import make_dataset
from videozoo.models.spec import WEIGHTS_HELP

REPO = Path(__file__).resolve().parents[1]
TINY = "motion_tiny"  # packaged weights: `default` works offline
DOWNLOADED = "x3d_xs"  # published weights only downloadable: `default` offline is the download error


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    # An empty cache and no network: a download is refused at once, with the one message.
    monkeypatch.setenv("VIDEOZOO_OFFLINE", "1")
    monkeypatch.setenv("VIDEOZOO_HOME", str(tmp_path / "home"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("consist")
    ds = make_dataset(
        root / "ds", classes=("move_left", "move_right"), videos_per_class=2, size=(64, 64), num_frames=16, seed=1
    )
    video = make_video(root / "clip.mp4", num_frames=24, width=80, height=64, fps=15)
    return {"ds": ds, "video": str(video)}


def _serve_argv(model: str, weights: str, tmp: Path, data) -> list[str]:
    return ["serve", "--model", model, "--weights", weights, "--port", "0", "--log-level", "warning"]


# subcommand -> argv for (model, weights, a fresh folder, the data); the video-text models answer classify.
COMMANDS = {
    "predict": lambda m, w, t, d: ["predict", d["video"], "--model", m, "--weights", w],
    "evaluate": lambda m, w, t, d: [
        "evaluate",
        "--model",
        m,
        "--weights",
        w,
        "--data",
        str(d["ds"].train_list),
        "--out",
        str(t / "eval"),
        "--workers",
        "0",
    ],
    "features": lambda m, w, t, d: ["features", d["video"], "--model", m, "--weights", w, "--out", str(t / "feats")],
    "timeline": lambda m, w, t, d: ["timeline", d["video"], "--model", m, "--weights", w, "--out", str(t / "tl")],
    "train": lambda m, w, t, d: [
        "train",
        "--model",
        m,
        "--weights",
        w,
        "--data",
        str(d["ds"].train_list),
        "--out",
        str(t / "train"),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--progress",
        "none",
        "--no-tensorboard",
        "--no-plot",
    ],
    "export": lambda m, w, t, d: [
        "export",
        m,
        "--weights",
        w,
        "--format",
        "exported-program",
        "--out",
        str(t / "model.pt2"),
    ],
    "serve": _serve_argv,
    "classify": lambda m, w, t, d: ["classify", d["video"], "--model", m, "--labels", "walking,waving", "--weights", w],
}
# classify takes a video-text model; the others motion_tiny (and x3d_xs for the download case).
MODELS = {"classify": ("xclip_b32_8f", "xclip_b32_8f")}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    if argv[0] != "serve":
        rc = main(argv)
        return rc, capsys.readouterr().err
    return _run_server(argv)


def _run_server(argv: list[str]) -> tuple[int, str]:
    """`videozoo serve` in a process of its own: (0 once it says it is ready, its stderr) or its exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "videozoo", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "ready:" in line:
                return 0, "".join(lines)
        return proc.wait(30), "".join(lines)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def _cases() -> list:
    cases = []
    for command in COMMANDS:
        for weights in ("default", "none"):
            if command == "classify" and weights == "default":
                continue  # the video-text models' weights are downloaded: the download case below
            # A random video-text model takes ~20 s to initialise on a slow machine.
            marks = [pytest.mark.slow] if command == "classify" else []
            cases.append(pytest.param(command, weights, marks=marks, id=f"{command}-{weights}"))
    return cases


@pytest.mark.parametrize("command, weights", _cases())
def test_every_subcommand_takes_default_and_none(command, weights, data, tmp_path, capsys):
    model = MODELS.get(command, (TINY,))[0]
    rc, err = _run(COMMANDS[command](model, weights, tmp_path, data), capsys)
    assert rc == 0, err
    assert "Traceback" not in err and "no such checkpoint file" not in err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_default_weights_that_must_be_downloaded_give_the_download_error(command, data, tmp_path, capsys):
    model = MODELS.get(command, (TINY, DOWNLOADED))[1]
    rc, err = _run(COMMANDS[command](model, "default", tmp_path, data), capsys)
    source = videozoo.get_spec(model).weights["kinetics400"]
    assert rc == 1, err
    assert f"cannot get {source.url}: offline mode (VIDEOZOO_OFFLINE) is set" in err
    assert "Traceback" not in err and "no such checkpoint file" not in err


# Python: the same words as the command line, one reading (ModelSpec.resolve_weights).
SAME_WORDS = [("none", None), ("None", None), ("random", None), ("default", "synthetic_motion")]


@pytest.mark.parametrize("word, same_as", SAME_WORDS, ids=[w for w, _ in SAME_WORDS])
def test_python_apis_read_the_words_as_the_command_line(word, same_as):
    torch.manual_seed(0)
    a = videozoo.create_model(TINY, weights=word)
    torch.manual_seed(0)
    b = videozoo.create_model(TINY, weights=same_as)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert videozoo.get_spec(TINY).resolve_weights(word).key == same_as


@pytest.mark.parametrize(
    "weights, words",
    [
        ("kinetics-400", "unknown weights 'kinetics-400' (published: synthetic_motion; or default, none"),
        ("missing.pth", "missing.pth: no such checkpoint file"),
        ("sub/dir/missing", "sub/dir/missing: no such checkpoint file"),
    ],
)
def test_a_bad_weights_word_is_one_clear_error(weights, words, data, capsys):
    assert main(["predict", data["video"], "--model", TINY, "--weights", weights]) != 0
    err = capsys.readouterr().err
    assert words in err and err.count("error:") == 1 and "Traceback" not in err


def _subparsers() -> dict:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def test_one_weights_help_for_every_subcommand():
    # argparse rewraps help text: compare with whitespace collapsed.
    want = " ".join(WEIGHTS_HELP.split())
    seen = []
    for name, sub in _subparsers().items():
        if name not in COMMANDS:
            continue
        for action in sub._actions:
            if "--weights" in action.option_strings:
                assert want in " ".join((action.help or "").split()), name
                seen.append(name)
    assert set(COMMANDS) <= set(seen), seen


# --- the shared flags ---------------------------------------------------------------------------------

ENGINE_COMMANDS = ("predict", "classify", "evaluate", "features", "timeline", "serve")


def _actions(flag: str, commands=COMMANDS) -> dict:
    subs = _subparsers()
    found = {c: find_flag(subs[c], flag) for c in commands}
    return {c: a for c, a in found.items() if a is not None}


def test_shared_flags_have_one_reading():
    views = _actions("--views", ENGINE_COMMANDS)
    assert set(views) == set(ENGINE_COMMANDS)
    assert len({a.type for a in views.values()}) == 1  # one parser of CLIPSxCROPS
    precision = _actions("--precision", ENGINE_COMMANDS)
    assert {tuple(a.choices) for a in precision.values()} == {("auto", "fp32", "bf16", "fp16")}
    assert {a.default for a in precision.values()} == {"auto"}
    for name, action in _actions("--device").items():
        assert action.help.startswith("cpu, cuda, cuda:N or auto"), name
    threads = _actions("--threads")
    assert set(threads) == {"predict", "classify", "evaluate", "timeline", "serve"}
    for name, action in threads.items():
        assert action.help.startswith("decoder threads per video"), name
    # Decoding worker processes: one name and its other spelling wherever they are.
    for name in ("evaluate", "features", "train"):
        action = find_flag(_subparsers()[name], "--workers")
        assert {"--workers", "--num-workers"} <= set(action.option_strings), name


@pytest.mark.parametrize("spelling", ["--workers", "--num-workers"])
def test_both_spellings_of_workers_mean_the_same(spelling):
    parser = build_parser()
    base = ["--model", TINY, "--out", "o"]
    assert parser.parse_args(["evaluate", "--data", "d.txt", *base, spelling, "3"]).workers == 3
    assert parser.parse_args(["features", "v.mp4", *base, spelling, "3"]).workers == 3
    assert parser.parse_args(["train", "--data", "d.txt", *base, spelling, "3"]).num_workers == 3


def test_the_docs_flag_table_is_the_parsers():
    text = (REPO / "docs" / "cli.md").read_text()
    block = text.split("<!-- flags:begin -->\n", 1)[1].split("\n<!-- flags:end -->", 1)[0]
    assert block == flags_markdown(), "docs/cli.md is out of date: run python scripts/update_docs.py"
    for (command, flag), _ in NOTES.items():  # every note is about a flag that subcommand has
        assert find_flag(_subparsers()[command], flag) is not None, (command, flag)
