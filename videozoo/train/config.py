"""The training configuration: one typed dataclass, merged from defaults, a YAML file and flags.

Precedence is defaults < YAML file < command line. Every field can be given on the command line as
``--field-name`` (booleans also as ``--no-field-name``; ``arch`` as ``KEY=VALUE`` pairs, values read
as YAML scalars). The resolved configuration is written to ``OUT/config.yaml`` and into every
checkpoint, so a run can be repeated or resumed from it.

The defaults are the torchvision video-classification recipe: SGD with momentum 0.9, weight decay
1e-4, lr 0.01 per 16 clips of global batch, 10 warm-up epochs from a factor 0.001, then x0.1 at
epochs 20 and 30, 45 epochs, 16 clips per batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from videozoo.data.workers import DEFAULT_STALL_SECONDS, check_stall_seconds
from videozoo.models.spec import WEIGHTS_HELP, weights_word

SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("fp32", "bf16", "fp16")
PROGRESS = ("auto", "bar", "log", "none")

# Fields that may differ between a run and its resumption without changing what was trained so far.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "resume",
        "wait",
        "out",
        "num_workers",
        "stall_timeout",
        "log_every",
        "progress",
        "tensorboard",
        "plot",
        "device",
        "check_videos",
    }
)
REQUIRED = ("model", "data", "out")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Units: epochs, clips, seconds."""

    # what to train, on what, where to write
    model: str = ""
    data: str = ""
    out: str = ""
    weights: str | None = None  # None: random init; "default", "kinetics400" or a checkpoint path: fine-tune
    val_data: str | None = None
    classes: str | None = None  # a file of class names, one a line (default: sorted training labels)
    resume: bool = False
    wait: bool = False  # another run writing in `out`: wait for it instead of stopping

    # optimisation (torchvision recipe)
    epochs: int = 45
    batch_size: int = 16  # clips per process and step
    accumulate: int = 1  # micro-batches per optimizer step
    optimizer: str = "sgd"
    base_lr: float = 0.01  # learning rate at a global batch of lr_reference_batch
    lr_reference_batch: int = 16
    lr: float | None = None  # an absolute learning rate, not scaled with the batch
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    layer_decay: float = 1.0  # < 1: layer-wise lr decay (transformers); 1: one rate for every layer
    schedule: str = "step"
    warmup_epochs: float = 10.0
    warmup_factor: float = 0.001
    milestones: list[int] = field(default_factory=lambda: [20, 30])
    gamma: float = 0.1
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None

    # numerics and devices
    precision: str = "fp32"
    freeze_bn: bool = False
    sync_bn: bool = False
    device: str = "auto"
    num_workers: int = 4
    stall_timeout: float = DEFAULT_STALL_SECONDS  # seconds a loader worker may go without progress
    seed: int = 0

    # model size and clip overrides (for small runs; None keeps the registry's value)
    arch: dict[str, Any] = field(default_factory=dict)
    num_frames: int | None = None
    sampling_rate: int | None = None
    fps: float | None = None
    crop_size: int | None = None  # eval crop; also the training crop unless train_crop_size is set
    train_crop_size: int | None = None
    short_side: int | None = None  # eval short side; the training jitter scales with it
    train_jitter: list[int] | None = None  # [min, max] short side of the training scale jitter
    dropout: float | None = None
    hflip: float = 0.5  # probability of a horizontal flip in training; 0 where left/right is the label
    cache_videos: bool = False  # decode every video once and keep its frames in memory (small datasets)
    check_videos: bool = True  # open every training video before the first epoch (fail early if a class has none)

    # reporting
    val_every: int = 1
    log_every: int = 20  # steps between log lines when no progress bar is shown
    progress: str = "auto"
    tensorboard: bool = True
    plot: bool = True

    def validate(self) -> TrainConfig:
        missing = [f"--{n}" for n in REQUIRED if not getattr(self, n)]
        if missing:
            raise ValueError(f"missing required setting(s): {', '.join(missing)}")
        choices = {"schedule": SCHEDULES, "optimizer": OPTIMIZERS, "precision": PRECISIONS, "progress": PROGRESS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        positive = ("epochs", "batch_size", "accumulate", "lr_reference_batch", "val_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers}")
        check_stall_seconds(self.stall_timeout)
        if self.warmup_epochs < 0 or not 0 < self.warmup_factor <= 1:
            raise ValueError("warmup_epochs must be >= 0 and warmup_factor in (0, 1]")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1] (1 turns it off), got {self.layer_decay}")
        if not 0 <= self.hflip <= 1:
            raise ValueError("hflip must be a probability in [0, 1]")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label_smoothing must be in [0, 1)")
        jitter = self.train_jitter
        if jitter is not None and (len(jitter) != 2 or jitter[0] > jitter[1]):
            raise ValueError(f"train_jitter must be [min, max], got {self.train_jitter}")
        if sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether None is allowed)."""
    args = typing.get_args(tp)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return inner[0], True
    return tp, False


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Check (and where lossless, convert) one value against the field's annotation."""
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: may not be empty")
    origin = typing.get_origin(base)
    if origin is list:
        (item,) = typing.get_args(base)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        return [_coerce(f"{name}[{i}]", item, v) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def config_from_dict(values: dict[str, Any], *, base: TrainConfig | None = None, source: str = "config") -> TrainConfig:
    """`base` (default: the defaults) with `values` laid over it; unknown keys are an error."""
    known = set(_field_names())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown setting(s): {', '.join(unknown)}")
    hints = _hints()
    changes = {k: _coerce(k, hints[k], v) for k, v in values.items()}
    if "weights" in changes:
        changes["weights"] = weights_word(changes["weights"])  # "none" is None, as on every --weights
    return dataclasses.replace(base or TrainConfig(), **changes)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    # YAML files may spell keys with dashes, as on the command line.
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Defaults < the YAML file at `path` < `overrides`."""
    cfg = config_from_dict(load_yaml(path), source=str(path))
    return config_from_dict(overrides, base=cfg, source="overrides")


# --- command line ---------------------------------------------------------------------------------

_HELP = {
    "model": "registry name of the model to train",
    "stall_timeout": "seconds a loader worker may go without decoding a frame before it is stopped and its "
    "video named; the run then saves its checkpoint and stops",
    "data": "training videos: a class-folder tree, a Kinetics CSV, or a 'path label' list",
    "out": "output folder (config.yaml, metrics.csv, checkpoint_last.pth, model.pth)",
    "weights": f"weights to start from: {WEIGHTS_HELP}; default: none. The classifier is replaced when the "
    "classes differ",
    "val_data": "held-out videos, evaluated on one centred clip per video after each epoch",
    "classes": "file of class names, one a line (default: the sorted training labels)",
    "resume": "continue from OUT/checkpoint_last.pth",
    "wait": "if another run is writing in --out, wait for it to end instead of stopping",
    "batch_size": "clips per process and step",
    "accumulate": "micro-batches accumulated per optimizer step",
    "base_lr": "learning rate for a global batch of lr_reference_batch clips; scaled linearly",
    "lr": "absolute learning rate (overrides base_lr, no scaling)",
    "layer_decay": "layer-wise learning-rate decay d of the transformer families: layer l of a model of depth "
    "D trains at lr x d^(D+1-l) (classifier at the full rate), and biases, norms, position tables and tokens "
    "get no weight decay; 1 turns it off",
    "schedule": "after warm-up: 'step' (x gamma at milestones) or 'cosine'",
    "warmup_epochs": "epochs of linear warm-up (per step) from warmup_factor x lr",
    "milestones": "epochs at which the step schedule multiplies the lr by gamma",
    "precision": "fp32, bf16 (autocast; CPU or CUDA) or fp16 (CUDA, with gradient scaling)",
    "freeze_bn": "keep BatchNorm layers in eval mode (running statistics frozen); for small batches",
    "sync_bn": "synchronise BatchNorm statistics across processes (CUDA only)",
    "device": "cpu, cuda, cuda:N or auto",
    "num_workers": "decoding worker processes (0: decode in this one)",
    "arch": "model-size overrides passed to the family class, e.g. width_factor=0.5 depth_factor=0.5",
    "num_frames": "frames per clip (overrides the model's input)",
    "sampling_rate": "take every n-th frame at the model's fps",
    "fps": "frame rate the sampling rate is counted at",
    "crop_size": "eval crop (and training crop unless --train-crop-size)",
    "short_side": "eval short side; the training scale jitter scales with it",
    "train_jitter": "MIN MAX short side of the training scale jitter",
    "dropout": "dropout before the classifier",
    "hflip": "probability of a horizontal flip of a training clip; 0 for classes that tell left from right",
    "progress": "auto (a bar on a terminal, log lines otherwise), bar, log or none",
    "check_videos": "open every training video before the first epoch; stop if none, or none of a class, can be read",
}


# Other spellings of a flag, as the other subcommands spell it.
_ALIASES = {"num_workers": ("--workers",)}


def _parse_pair(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), yaml.safe_load(value) if value else None


def _optional(parse):
    def convert(text: str):
        return None if text.lower() in ("none", "null") else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_cli_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--config FILE.yaml` and one `--field-name` flag per TrainConfig field to `parser`.

    Flags not given on the command line stay absent from the parsed namespace, so that
    `config_from_args` can tell them from defaults.
    """
    parser.add_argument("--config", metavar="FILE.yaml", help="settings file; command-line flags win over it")
    hints = _hints()
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        base, optional = _base_type(hints[f.name])
        default = getattr(defaults, f.name)
        help_text = _HELP.get(f.name, f.name.replace("_", " "))
        if default not in (None, "", {}, []) and not isinstance(default, bool):
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        origin = typing.get_origin(base)
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif origin is list:
            (item,) = typing.get_args(base)
            nargs = 2 if f.name == "train_jitter" else "+"
            parser.add_argument(flag, nargs=nargs, type=item, metavar=f.name.upper(), **kwargs)
        elif origin is dict:
            parser.add_argument(flag, nargs="*", type=_parse_pair, metavar="KEY=VALUE", **kwargs)
        else:
            convert = _optional(base) if optional else base
            if f.name == "weights":
                convert = weights_word
            choices = {"schedule": SCHEDULES, "optimizer": OPTIMIZERS, "precision": PRECISIONS, "progress": PROGRESS}
            parser.add_argument(flag, *_ALIASES.get(f.name, ()), type=convert, choices=choices.get(f.name), **kwargs)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The resolved TrainConfig of a namespace parsed with `add_cli_arguments`: defaults < --config < flags."""
    cfg = TrainConfig()
    config_file = getattr(args, "config", None)
    if config_file:
        cfg = config_from_dict(load_yaml(config_file), source=str(config_file))
    given = {name: getattr(args, name) for name in _field_names() if hasattr(args, name)}
    if "arch" in given:
        # --arch KEY=VALUE pairs add to (and override) the YAML file's arch mapping.
        given["arch"] = {**cfg.arch, **dict(given["arch"])}
    return config_from_dict(given, base=cfg, source="command line").validate()


def resume_differences(saved: TrainConfig, current: TrainConfig) -> list[str]:
    """Settings that differ between a checkpoint's run and the run resuming it, other than those
    allowed to change (`RESUMABLE_CHANGES`)."""
    out = []
    for name in _field_names():
        if name in RESUMABLE_CHANGES:
            continue
        a, b = getattr(saved, name), getattr(current, name)
        if a != b:
            out.append(f"{name}: {a!r} in the checkpoint, {b!r} now")
    return out
