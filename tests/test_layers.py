"""The import layers hold: each package of videozoo imports only the packages below it.

The contract lives in pyproject.toml (import-linter): cli > train > jobs > engine > models >
weights > data > io.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter.cli", reason="import-linter comes with the dev extra")

CHECK = (
    "import sys; from importlinter import cli; "
    "sys.exit(cli.lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
)


def test_packages_import_only_the_layers_below():
    # In a process of its own: import-linter's output breaks under pytest's capture once a native
    # library that other tests import (OpenVINO) is loaded in the same process.
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    proc = subprocess.run([sys.executable, "-c", CHECK, str(pyproject)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
