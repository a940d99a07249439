"""The version is set in one place (videozoo/version.py) and the changelog's newest entry is it."""

from __future__ import annotations

import re
from pathlib import Path

import videozoo
from videozoo.version import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_set_in_one_place():
    # Read as text: tomllib is Python 3.11+, and the package supports 3.10.
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, flags=re.MULTILINE)
    assert re.search(r'^dynamic = \[.*"version".*\]', project, flags=re.MULTILINE)
    assert 'version = { attr = "videozoo.version.__version__" }' in text
    assert videozoo.__version__ == __version__
    # No other file of the package spells the version out.
    for path in (ROOT / "videozoo").rglob("*.py"):
        if path.name != "version.py":
            assert f'"{__version__}"' not in path.read_text(), path


def test_the_changelog_starts_with_this_version():
    releases = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert releases and releases[0] == __version__, releases
    assert len(set(releases)) == len(releases)
