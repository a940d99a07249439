"""`python -m videozoo.train --model M --data SPEC --out DIR [...]`; also what `torchrun` launches."""

from __future__ import annotations

import argparse
import os
import sys

from videozoo.train.config import add_cli_arguments, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m videozoo.train",
        description="Train or fine-tune a videozoo model. Settings: defaults < --config FILE.yaml < flags.",
    )
    return add_cli_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        from videozoo.train.loop import train

        result = train(config)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        from videozoo.jobs.rundir import exit_status

        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"videozoo train: error: {msg}", file=sys.stderr)
        return exit_status(e)
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.summary())
    # A run stopped by SIGTERM has saved its checkpoint and exits cleanly too.
    return 0


if __name__ == "__main__":
    sys.exit(main())
