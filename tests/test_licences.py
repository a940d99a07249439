"""Licences: every weight source names its terms, a non-commercial one is said on its first download,
the table shows them, and LICENSE and NOTICE (naming each file shipped from a third party) are in the
repository and in the built wheel."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import videozoo
from videozoo.models.registry import get_spec
from videozoo.weights.sources import SPDX_LICENSES, WeightSource, check_license, license_url

ROOT = Path(__file__).resolve().parents[1]


def _sources():
    return [(name, key, src) for name in videozoo.list_models() for key, src in get_spec(name).weights.items()]


@pytest.mark.parametrize("name, key, source", _sources(), ids=[f"{n}:{k}" for n, k, _ in _sources()])
def test_every_weight_source_names_its_licence(name, key, source):
    assert check_license(source.license) == source.license
    assert license_url(source.license).startswith("https://")


# The publishers' own terms for a few entries (model card or repository licence), so that a wrong
# licence on an entry fails here; entries added later are held to the field's form above.
PUBLISHED = [
    ("slow_r50", "Apache-2.0"),  # pytorchvideo model zoo
    ("x3d_m", "Apache-2.0"),
    ("i3d_r50_nl_32x2", "Apache-2.0"),  # video-nonlocal-net
    ("i3d_inception_rgb", "Apache-2.0"),  # DeepMind kinetics-i3d via pytorch-i3d
    ("s3d", "torchvision pre-trained model terms <https://github.com/pytorch/vision#pre-trained-model-license>"),
    ("videomae_b_k400", "CC-BY-NC-4.0"),
    ("timesformer_b_k400", "CC-BY-NC-4.0"),
    ("vivit_b_k400", "MIT"),
    ("xclip_b32_8f", "MIT"),
    ("motion_tiny", "Apache-2.0"),
]


@pytest.mark.parametrize("name, expected", PUBLISHED)
def test_published_licences(name, expected):
    spec = get_spec(name)
    assert spec.weights[spec.default_weights].license == expected
    assert spec.weights[spec.default_weights].non_commercial == ("-NC-" in expected)


BAD_LICENCES = [
    ("", "neither a known SPDX id"),
    ("apache", "neither a known SPDX id"),
    ("Some Terms https://example.org", "neither a known SPDX id"),  # the URL must be in <>
    ("Some Terms <http://example.org>", "neither a known SPDX id"),  # https only
    ("<https://example.org>", "neither a known SPDX id"),  # a name is needed
]


@pytest.mark.parametrize("text, words", BAD_LICENCES)
def test_a_bad_licence_is_refused_naming_the_url(text, words):
    with pytest.raises(ValueError, match=words) as e:
        WeightSource(url="https://example.org/w.pth", format="torchvision", license=text)
    assert "https://example.org/w.pth" in str(e.value)


def test_the_licence_is_required():
    with pytest.raises(TypeError, match="license"):
        WeightSource(url="https://example.org/w.pth", format="torchvision")  # type: ignore[call-arg]


def test_named_terms_and_spdx_ids_are_accepted():
    named = WeightSource(url="https://e.org/w.pth", format="pyth", license="Research Terms <https://e.org/terms>")
    assert license_url(named.license) == "https://e.org/terms" and not named.non_commercial
    nc = WeightSource(url="https://e.org/w.pth", format="pyth", license="Non-Commercial Terms <https://e.org/t>")
    assert nc.non_commercial
    for spdx in SPDX_LICENSES:
        assert WeightSource(url="https://e.org/w.pth", format="pyth", license=spdx).non_commercial == ("-NC-" in spdx)


def test_repository_licence_and_notice():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) == 202
    notice = (ROOT / "NOTICE").read_text()
    named = re.findall(r"File: (\S+)", notice)
    # Every data file shipped in the package (the package-data globs) is named, and each named file exists.
    shipped = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "videozoo").rglob("*")
        if p.suffix in (".txt", ".gz", ".safetensors") and p.name != "LICENSE-CLIP-BPE.txt"
    }
    assert set(named) == shipped, (named, shipped)


def test_built_wheel_holds_licence_notice_and_the_shipped_files(tmp_path):
    import setuptools  # the test extra's (>= 77: license-files)

    assert int(setuptools.__version__.split(".")[0]) >= 77, (
        f"setuptools {setuptools.__version__}: pip install -e '.[test]'"
    )
    # Built from a copy, so that the build leaves nothing in the repository.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "videozoo", src / "videozoo", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("videozoo-*.whl")
    assert wheel.name.startswith(f"videozoo-{videozoo.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert z.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        assert z.read(f"{info}/licenses/NOTICE") == (ROOT / "NOTICE").read_bytes()
        metadata = z.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata and f"Version: {videozoo.__version__}" in metadata
    for file in re.findall(r"File: (\S+)", (ROOT / "NOTICE").read_text()):
        assert file in names
    assert "videozoo/models/video_text/LICENSE-CLIP-BPE.txt" in names
