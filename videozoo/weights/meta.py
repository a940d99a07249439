"""What a videozoo checkpoint says about the model its weights belong to.

A :class:`CheckpointMeta` travels with the weights in every file videozoo writes: the registry
name, the architecture arguments the model was built with, the clip it expects, its classes, the
training settings that produced it and the videozoo version that wrote it. With it a fine-tuned,
resized model rebuilds itself from the file alone.

:meth:`CheckpointMeta.to_dict` / :meth:`CheckpointMeta.from_dict` are its one serialisation (plain
JSON data); `.pth` files hold the dict, `.safetensors` files its JSON text
(:meth:`to_json` / :meth:`from_json`). Reading validates every field and names the file and the
field in the error.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from videozoo.data.input_config import InputConfig
from videozoo.weights.errors import CheckpointError

#: The layout of the record; a file with a higher number was written by a newer videozoo.
RECORD_VERSION = 1

_FIELDS = ("record", "model", "arch", "input", "class_names", "num_classes", "training", "videozoo_version")


def _current_version() -> str:
    from videozoo.version import __version__

    return __version__


@dataclass(frozen=True)
class CheckpointMeta:
    """The record of the model a checkpoint's weights belong to.

    model: the registry name (`videozoo models` lists them).
    arch: keyword arguments of the family class, laid over the registry entry's own `arch` (files
        written by videozoo hold the full set; sequences are tuples, as the classes take them).
    input: the clip the model expects at evaluation time; None: the registry entry's.
    class_names: one per classifier output, or None when unknown.
    num_classes: the classifier's outputs; None only in files written before this record existed.
    training: the training settings (`TrainConfig.to_dict()`) that produced the weights, or None.
    videozoo_version: the version that wrote the file; None for files older than this record.
    """

    model: str
    arch: Mapping[str, Any] = field(default_factory=dict)
    input: InputConfig | None = None
    class_names: tuple[str, ...] | None = None
    num_classes: int | None = None
    training: Mapping[str, Any] | None = None
    videozoo_version: str | None = field(default_factory=_current_version)

    def __post_init__(self) -> None:
        # Canonical forms, so that a record read back equals the one written.
        object.__setattr__(self, "arch", {str(k): _tuples(v) for k, v in dict(self.arch).items()})
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.training is not None:
            object.__setattr__(self, "training", _plain(self.training))
        if self.class_names is not None and self.num_classes is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names: {len(self.class_names)} names for {self.num_classes} classes")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: dicts, lists, strings, numbers, booleans and None."""
        return {
            "record": RECORD_VERSION,
            "model": self.model,
            "arch": _plain(self.arch),
            "input": _plain(dataclasses.asdict(self.input)) if self.input is not None else None,
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "num_classes": self.num_classes,
            "training": _plain(self.training) if self.training is not None else None,
            "videozoo_version": self.videozoo_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str) -> CheckpointMeta:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: videozoo_meta is not valid JSON ({e})") from e
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> CheckpointMeta:
        """The record from `to_dict`'s output, checked field by field; `source` names the file in errors."""

        def fail(name: str, why: str) -> CheckpointError:
            return CheckpointError(f"{source}: videozoo_meta.{name}: {why}")

        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: videozoo_meta is a {type(data).__name__}, not a dict")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise CheckpointError(f"{source}: videozoo_meta has unknown field(s) {', '.join(map(str, unknown))}")
        record = data.get("record")
        if not _is_int(record) or record < 1:
            raise fail("record", f"expected a positive integer, got {record!r}")
        if record > RECORD_VERSION:
            raise fail(
                "record", f"layout {record} was written by a newer videozoo (this one reads up to {RECORD_VERSION})"
            )

        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise fail("model", f"expected a registry name, got {model!r}")
        arch = data.get("arch", {})
        if not isinstance(arch, dict) or not all(isinstance(k, str) for k in arch):
            raise fail("arch", f"expected a dict of keyword arguments, got {arch!r}")
        input_config = _input_config(data.get("input"), fail)
        names = data.get("class_names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise fail("class_names", "expected a list of strings or null")
        num_classes = data.get("num_classes")
        if num_classes is not None and (not _is_int(num_classes) or num_classes < 1):
            raise fail("num_classes", f"expected a positive integer or null, got {num_classes!r}")
        training = data.get("training")
        if training is not None and not isinstance(training, dict):
            raise fail("training", f"expected a dict or null, got a {type(training).__name__}")
        version = data.get("videozoo_version")
        if version is not None and not isinstance(version, str):
            raise fail("videozoo_version", f"expected a string or null, got {version!r}")
        try:
            return cls(
                model=model,
                arch=arch,
                input=input_config,
                class_names=tuple(names) if names is not None else None,
                num_classes=num_classes,
                training=training,
                videozoo_version=version,
            )
        except ValueError as e:
            raise CheckpointError(f"{source}: videozoo_meta.{e}") from e


def _input_config(data: Any, fail) -> InputConfig | None:
    """An InputConfig from its dict, each field checked against the dataclass's annotations."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise fail("input", f"expected a dict or null, got a {type(data).__name__}")
    hints = typing.get_type_hints(InputConfig)
    fields = {f.name: f for f in dataclasses.fields(InputConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise fail("input", f"unknown field(s) {', '.join(map(str, unknown))}")
    missing = [
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise fail("input", f"missing field(s) {', '.join(missing)}")
    values = {}
    for name, value in data.items():
        try:
            values[name] = _coerce(value, hints[name])
        except TypeError:
            raise fail(f"input.{name}", f"expected {_type_name(hints[name])}, got {value!r}") from None
    return InputConfig(**values)


def _coerce(value: Any, hint: Any) -> Any:
    """`value` (JSON data) as the annotated type: lists become tuples, integers floats; TypeError if it does not fit."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        if value is None:
            return None
    elif origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option)
            except TypeError:
                continue
    elif origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if _is_int(value):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    else:
        raise TypeError(f"no reader for {hint!r}")
    raise TypeError(value)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(typing.get_args(hint))} numbers"
    return {float: "a number", int: "an integer", str: "a string"}.get(hint, str(hint))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _tuples(value: Any) -> Any:
    """Lists (as JSON, YAML and weights-only files store them) back to the tuples the builders take."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: JSON data."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
