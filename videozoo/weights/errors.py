"""The error every checkpoint reader and writer raises for a file it cannot use."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message names the file and the reason."""
