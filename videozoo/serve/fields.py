"""The text fields of the multipart endpoints: one table that both the OpenAPI schema and the checks
of every request are made from, so the schema says exactly what the server takes.

Each field's text must match its pattern whole (an empty value, or a field left out, takes the
default); a field the endpoint does not take is refused (400 ``bad_field``), which the schema says
with ``additionalProperties: false``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from videozoo.data.plan import CROP_COUNTS, ViewPlan
from videozoo.models.registry import get_spec
from videozoo.serve.config import ServeConfig
from videozoo.serve.errors import ApiError

# Padding spaces are allowed around every value; an empty value is the field's default.
_POSITIVE_INT = r"0*[1-9][0-9]{0,5}"
_POSITIVE_SECONDS = r"(0*[1-9][0-9]{0,5}(\.[0-9]{0,6})?|0*\.0{0,5}[1-9][0-9]{0,5})"
_SECONDS = r"([0-9]{1,6}(\.[0-9]{0,6})?|\.[0-9]{1,6})"
_BOOLEAN = r"(true|false)"
_MODEL = r"[A-Za-z0-9_.+-]{1,100}"


def _either(*choices: str) -> str:
    return "(" + "|".join(choices) + ")"


@dataclass(frozen=True)
class Field:
    description: str
    pattern: str  # the value without its padding; the whole text must match ` *(pattern)? *`

    @property
    def full(self) -> str:
        return rf"^ *({self.pattern})? *$"


def endpoint_fields(config: ServeConfig) -> dict[str, dict[str, Field]]:
    """Every multipart endpoint's text fields, with their patterns for this server's models and limits."""
    plans = [f"{c}x{k}" for k in CROP_COUNTS for c in range(1, config.max_views // k + 1)]
    # `published` where every served model's published protocol is within the view limit.
    published_fits = all(
        ViewPlan.parse("published").resolve(get_spec(m.name).input).num_views <= config.max_views for m in config.models
    )
    views = _either(*(p.replace("x", "[xX]") for p in plans), *(["published"] if published_fits else []))
    # Any registry-like name: one that is not served is answered 404 unknown_model.
    model = Field("a served model (default: the first): " + ", ".join(m.name for m in config.models), _MODEL)
    top_k = Field(f"how many classes to return (default {config.top_k})", _POSITIVE_INT)
    return {
        "predict": {
            "model": model,
            "views": Field(
                f"CLIPSxCROPS (1 or 3 crops, at most {config.max_views} views), e.g. 1x1 or 10x3, or published "
                f"(default {config.views})",
                views,
            ),
            "top_k": top_k,
            "images": Field(
                "true: score a still image (PNG, JPEG, ...) as a one-frame clip; by default it is refused "
                "with 415 not_a_video (default false)",
                _BOOLEAN,
            ),
        },
        "timeline": {
            "model": model,
            "stride": Field("seconds between windows (default: half a clip)", _POSITIVE_SECONDS),
            "window": Field("seconds per window (default: the model's clip)", _POSITIVE_SECONDS),
            "min_segment": Field(
                "seconds under which a segment is absorbed by its neighbours (default: the window)", _SECONDS
            ),
            "smooth": Field("windows in the centred moving average before segmenting (default 3)", _POSITIVE_INT),
            "top_k": top_k,
        },
    }


def multipart_doc(fields: dict[str, Field]) -> dict:
    """The OpenAPI request body of a multipart endpoint (its body is parsed by hand, as it streams)."""
    props: dict[str, Any] = {"video": {"type": "string", "format": "binary", "description": "the video file"}}
    props.update(
        {name: {"type": "string", "pattern": f.full, "description": f.description} for name, f in fields.items()}
    )
    schema = {"type": "object", "properties": props, "required": ["video"], "additionalProperties": False}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


class Fields:
    """The text fields of one request: unknown ones refused, each value checked against its pattern
    (messages name the field), then read."""

    def __init__(self, values: dict[str, str], fields: dict[str, Field]):
        self.values = values
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ApiError(
                400,
                "bad_field",
                f"unknown form field(s) {', '.join(unknown)}; this endpoint takes video, {', '.join(sorted(fields))}",
            )
        for name, text in values.items():
            if re.fullmatch(fields[name].full, text) is None:
                raise self.bad(name, fields[name].description)

    def bad(self, name: str, why: str) -> ApiError:
        return ApiError(400, "bad_field", f"{name}={self.values.get(name)!r}: {why}")

    def text(self, name: str) -> str:
        return self.values.get(name, "").strip(" ")

    def positive_int(self, name: str, default: int) -> int:
        text = self.text(name)
        return int(text) if text else default

    def seconds(self, name: str) -> float | None:
        text = self.text(name)
        return float(text) if text else None

    def boolean(self, name: str) -> bool:
        return self.text(name) == "true"
