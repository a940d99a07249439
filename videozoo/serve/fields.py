"""The patterns of the multipart endpoints' text fields: what the OpenAPI schema says a value may be,
and the first check the server makes of it, from this one table.

A value matches when its whole text does; padding spaces are allowed and an empty value takes the
field's default. Patterns are ECMA and Python regular expressions alike (no classes such as ``\\s``
that the two read differently), so a schema-driven client and the server agree.
"""

from __future__ import annotations

import functools
import re

from videozoo.data.plan import CROP_COUNTS, ViewPlan
from videozoo.models.registry import get_spec
from videozoo.serve.config import ServeConfig

_POSITIVE_INT = r"0*[1-9][0-9]{0,5}"
_POSITIVE_SECONDS = r"0*[1-9][0-9]{0,5}(\.[0-9]{0,6})?|0*\.0{0,5}[1-9][0-9]{0,5}"
_SECONDS = r"[0-9]{1,6}(\.[0-9]{0,6})?|\.[0-9]{1,6}"
# Any registry-like name: one that is not served is answered 404 unknown_model, not refused here.
_MODEL = r"[A-Za-z0-9_.+-]{1,100}"


def _whole(pattern: str) -> str:
    return rf"^ *({pattern})? *$"


@functools.lru_cache(maxsize=8)
def field_patterns(config: ServeConfig) -> dict[str, str]:
    """Field name -> the pattern its whole value must match, for this server's view limit and models."""
    # Every plan within the view limit, and `published` where each served model's protocol is.
    plans = [f"{c}[xX]{k}" for k in CROP_COUNTS for c in range(1, config.max_views // k + 1)]
    if all(
        ViewPlan.parse("published").resolve(get_spec(m.name).input).num_views <= config.max_views for m in config.models
    ):
        plans.append("published")
    raw = {
        "model": _MODEL,
        "views": "|".join(plans),
        "top_k": _POSITIVE_INT,
        "images": "true|false",
        "stride": _POSITIVE_SECONDS,
        "window": _POSITIVE_SECONDS,
        "min_segment": _SECONDS,
        "smooth": _POSITIVE_INT,
    }
    return {name: _whole(p) for name, p in raw.items()}


# What a value that does not match is told it should be (the message of its 400 bad_field).
_EXPECTED = {
    "model": "a model name",
    "views": "CLIPSxCROPS with 1 or 3 crops and at most {max_views} views (e.g. 1x1, 10x3), or published",
    "top_k": "a whole number from 1",
    "images": "true or false",
    "stride": "a number of seconds more than 0",
    "window": "a number of seconds more than 0",
    "min_segment": "0 or a number of seconds more than 0",
    "smooth": "a whole number from 1",
}


def expected(name: str, config: ServeConfig) -> str:
    return _EXPECTED[name].format(max_views=config.max_views)


# Fields only a zero-shot (video-text) model takes: its labels, their template, its none threshold.
ZERO_SHOT_FIELDS = frozenset({"labels", "template", "none_threshold"})


def listed_fields(fields: dict[str, str], config: ServeConfig) -> tuple[dict[str, str], list[str]]:
    """The fields an endpoint's schema lists for this server, and the required ones besides `video`.

    A server of classifiers only refuses the zero-shot fields (400 bad_field), so its schema leaves
    them out; a server of zero-shot models only needs `labels` in every request, so it is required.
    """
    zero_shot = [not get_spec(m.name).cls.has_classifier for m in config.models]
    listed = {k: v for k, v in fields.items() if k not in ZERO_SHOT_FIELDS or any(zero_shot)}
    required = ["labels"] if "labels" in listed and all(zero_shot) else []
    return listed, required


def matches(patterns: dict[str, str], name: str, text: str) -> bool:
    """Whether field `name`'s value `text` fits its pattern (a field without one: any text)."""
    return name not in patterns or re.fullmatch(patterns[name], text) is not None
