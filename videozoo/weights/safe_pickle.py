"""A pickle reader that admits plain data only: numpy arrays, dicts, lists, numbers and strings.

The video-nonlocal-net checkpoints are Python pickles. A pickle can name any importable callable
and have it called while loading, so an untrusted file could run code. This reader resolves only
the few globals that rebuild numpy arrays and refuses everything else before anything is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

# numpy 1.x pickles say numpy.core.multiarray, numpy 2.x says numpy._core.multiarray.
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED: dict[tuple[str, str], str] = {
    **{(m, "_reconstruct"): "numpy.ndarray reconstruction" for m in _NUMPY_CORE},
    **{(m, "scalar"): "numpy scalar" for m in _NUMPY_CORE},
    ("numpy", "ndarray"): "numpy.ndarray",
    ("numpy", "dtype"): "numpy.dtype",
    # Python 3 pickles of bytes at protocol 2 go through codecs.encode(str, "latin1").
    ("_codecs", "encode"): "bytes",
}


class UnsafePickleError(RuntimeError):
    """The pickle names something other than plain data; nothing from it was run."""


class _DataOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"{self._source}: refused to load: the pickle asks for '{module}.{name}', which is "
                "not plain data (only numpy arrays, dicts, lists, numbers and strings are accepted); "
                "such a file can run code when unpickled, and nothing in it was run"
            )
        import importlib

        if module == "_codecs":
            import codecs

            return codecs.encode
        mod = importlib.import_module(_numpy_core() if module in _NUMPY_CORE else module)
        return getattr(mod, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused to load: persistent ids are not plain data")


def _numpy_core() -> str:
    # numpy 1.x has no numpy._core; either name reaches the same functions.
    try:
        import numpy._core.multiarray  # noqa: F401

        return "numpy._core.multiarray"
    except ImportError:
        return "numpy.core.multiarray"


def load_data_pickle(data: bytes, source: str) -> Any:
    """Unpickle `data` admitting plain data only; `source` names the file in errors."""
    try:
        return _DataOnlyUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or not a pickle at all
        raise ValueError(f"{source}: not a readable pickle ({type(e).__name__}: {e})") from e
