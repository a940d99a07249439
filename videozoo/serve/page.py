"""The web page served at ``/``: one self-contained HTML file (styles and script inline, no CDN)."""

from __future__ import annotations

import functools
from importlib import resources


@functools.lru_cache(maxsize=1)
def page_html() -> str:
    return resources.files("videozoo.serve").joinpath("page.html").read_text(encoding="utf-8")
