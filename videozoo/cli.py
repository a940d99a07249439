"""The `videozoo` command: a thin layer over the library. Each subcommand parses and delegates."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_models(args: argparse.Namespace) -> int:
    from videozoo.zoo_table import flops_notes, format_table, model_rows

    rows = model_rows()
    if args.json:
        from videozoo.flops import FLOPS_CONVENTION

        print(json.dumps({"flops_convention": FLOPS_CONVENTION, "models": rows}, indent=2))
    else:
        print(format_table(rows, markdown=args.markdown))
        for note in flops_notes():
            print(f"note: {note}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from videozoo.convert import convert_checkpoint

    name, out = convert_checkpoint(args.input, args.output, model=args.model)
    print(f"{args.input} -> {out} ({name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videozoo", description="Pretrained video action recognition models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the models with their computed and published figures")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("convert", help="convert a checkpoint (e.g. a Caffe2 .pkl) to .pth or .safetensors")
    p.add_argument("input", help="checkpoint in any supported format")
    p.add_argument("output", help="OUT.pth or OUT.safetensors")
    p.add_argument("--model", help="registry name (inferred from the checkpoint's keys if omitted)")
    p.set_defaults(func=_cmd_convert)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (RuntimeError, ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"videozoo {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
