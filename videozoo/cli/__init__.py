"""The `videozoo` command."""

from videozoo.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
