"""The import layers hold: each package of videozoo imports only the packages below it.

The contract lives in pyproject.toml (import-linter): cli > train > jobs > engine > models >
weights > data > io.
"""

from pathlib import Path

import pytest

cli = pytest.importorskip("importlinter.cli", reason="import-linter comes with the dev extra")


def test_packages_import_only_the_layers_below(capsys):
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    code = cli.lint_imports(config_filename=str(pyproject), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out
