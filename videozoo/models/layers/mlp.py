"""The transformer feed-forward block and the activations the published configs name."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# Names as the published configs spell them (transformers' `hidden_act`). `gelu_fast`,
# `gelu_new` and `gelu_pytorch_tanh` are the same tanh approximation of GELU written three ways
# (0.7978845608 = sqrt(2/pi)); it differs from the exact GELU by up to ~1e-3 per value, enough to
# move a 12-layer model's logits past a 1e-4 tolerance, so the name is honoured, never mapped to
# the exact one.
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_fast": functools.partial(F.gelu, approximate="tanh"),
    "gelu_new": functools.partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "quick_gelu": lambda x: x * (1.702 * x).sigmoid(),
    "relu": F.relu,
    "silu": F.silu,
}


class Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = activation(name)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def activation(name: str) -> Callable[[Tensor], Tensor]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r} (known: {', '.join(sorted(_ACTIVATIONS))})") from None


class Mlp(nn.Module):
    """fc1 -> activation -> fc2 on (B, N, D) tokens; dropout after each linear layer."""

    def __init__(self, dim: int, hidden: int, *, act: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = Activation(act)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
