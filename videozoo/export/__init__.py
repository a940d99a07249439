"""Exporting models to ONNX and to torch.export programs: self-describing files that run without videozoo.

    import videozoo
    videozoo.export("x3d_s", format="onnx", out="x3d_s.onnx")            # onnxruntime, TensorRT, ...
    videozoo.export("x3d_s", format="exported-program", out="x3d_s.pt2")  # torch.export.load(...).module()

An interface layer: it builds on the models and the engine's preparation; only the command line
imports it. See docs/export.md.
"""

import sys
import types

from videozoo.export.api import FORMATS, ExportError, ExportExtraMissingError, export
from videozoo.export.files import load_program, read_onnx_meta

__all__ = ["FORMATS", "ExportError", "ExportExtraMissingError", "export", "load_program", "read_onnx_meta"]


class _CallableModule(types.ModuleType):
    """`videozoo.export` is this package once imported; calling it calls :func:`export`."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
