"""The flags that the model-running subcommands share: one table of their names, meanings and defaults,
made from the argparse parsers themselves (docs/cli.md holds it; `scripts/update_docs.py` rewrites it).
"""

from __future__ import annotations

import argparse
from typing import Any

from videozoo.models.spec import WEIGHTS_HELP

COMMANDS = ("predict", "classify", "evaluate", "features", "timeline", "train", "export", "serve")

# flag -> what it means wherever it appears (the exceptions are NOTES).
MEANINGS = {
    "--weights": WEIGHTS_HELP,
    "--views": "views per video: CLIPSxCROPS (1x1 is the centred clip, centre crop; 10x3, ...) or published "
    "(the model's published test protocol)",
    "--precision": "arithmetic of the model: auto (bf16 where the hardware runs it natively, else fp32), fp32, "
    "bf16 or fp16",
    "--device": "where the model runs: cpu, cuda, cuda:N or auto (a GPU where there is one)",
    "--threads": "FFmpeg decoder threads per video (default: FFmpeg picks, one per core)",
    "--batch-size": "inputs per forward pass (views; dense features: windows)",
    "--workers": "decoding worker processes (0: decode in the command's own process)",
    "--out": "where the results are written: a folder",
}

# Where a subcommand's flag means something more or other than the shared meaning.
NOTES = {
    ("serve", "--weights"): "repeatable: once for every model or once per `--model`",
    ("serve", "--views"): "the views of a request that sends no `views` field",
    ("serve", "--workers"): "inference workers (threads), each with one replica of every model, not decoding processes",
    ("serve", "--threads"): "default: `--compute-threads` (the model's CPU threads per worker)",
    ("train", "--batch-size"): "clips per process and optimizer step",
    ("train", "--precision"): "training arithmetic: fp32, bf16 (autocast) or fp16 (with gradient scaling)",
    ("train", "--weights"): "the weights training starts from; the classifier is replaced when the classes differ",
    ("export", "--precision"): "the exported graph's arithmetic: fp32 or fp16 (GPU runtimes)",
    ("export", "--out"): "a file (default: MODEL.onnx or MODEL.pt2); `--batch` sets the exported batch",
    ("features", "--workers"): "not with `--dense` (each video is decoded once, in order)",
}


# Parser defaults that stand for something else (None: "not given", told apart from a given value).
SHOWN_DEFAULTS = {("serve", "--weights"): "default", ("features", "--workers"): "2", ("train", "--weights"): "none"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise ValueError("the parser has no subcommands")


def _default(command: str, action: argparse.Action) -> Any:
    if action.default is not argparse.SUPPRESS:
        return action.default
    if command == "train":  # train's flags leave the namespace alone; its defaults are the config's
        from videozoo.train.config import TrainConfig

        return getattr(TrainConfig(), action.dest)
    return None


def _shown(value: Any) -> str:
    # None: chosen at run time (the batch from free memory, FFmpeg's threads, the output's name).
    return "auto" if value is None else str(value)


def find_flag(sub: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    """The action of `flag` in `sub`, under its own name or another spelling of it."""
    spellings = {flag, "--num-workers"} if flag == "--workers" else {flag}
    for action in sub._actions:
        if spellings & set(action.option_strings):
            return action
    return None


def cell(command: str, action: argparse.Action | None) -> str:
    """One table cell: the default (or `required`), other choices, other spellings."""
    if action is None:
        return "—"
    flag = action.option_strings[0]
    if action.required or _default(command, action) == "":
        text = "required"
    else:
        text = f"`{SHOWN_DEFAULTS.get((command, flag)) or _shown(_default(command, action))}`"
    if action.choices is not None:
        text += " of " + ", ".join(map(str, action.choices))
    if len(action.option_strings) > 1:
        text += " (" + " = ".join(f"`{s}`" for s in action.option_strings) + ")"
    return text


def flags_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown table of the shared flags of every model-running subcommand, with its notes."""
    if parser is None:
        from videozoo.cli.main import build_parser

        parser = build_parser()
    subs = _subparsers(parser)
    lines = [
        "| flag | meaning | " + " | ".join(f"`{c}`" for c in COMMANDS) + " |",
        "|---|---|" + "---|" * len(COMMANDS),
    ]
    for flag, meaning in MEANINGS.items():
        cells = [cell(c, find_flag(subs[c], flag)) for c in COMMANDS]
        lines.append(f"| `{flag}` | {meaning} | " + " | ".join(cells) + " |")
    notes = [f"- `{c} {flag}`: {text}" for (c, flag), text in NOTES.items()]
    return "\n".join(lines) + (
        "\n\nCells: the default (`auto`: chosen at run time; — where the subcommand has no such flag), the "
        "choices, other spellings. Where a subcommand's flag means more or other:\n\n" + "\n".join(notes)
    )
