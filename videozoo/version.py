"""The version of videozoo (one place; the package, checkpoints and run manifests read it)."""

__version__ = "0.1.0"
