"""The OpenVINO backend: the prepared model converted once, compiled per micro-batch size, cached on disk.

    engine = Engine.build("slow_r50", weights="kinetics400", backend="openvino")

The model is prepared as the export prepares it (eval mode, BatchNorm folded into the convolutions;
no oneDNN-specific fusions, which OpenVINO could not read) and converted with
``openvino.convert_model`` into a graph with a symbolic batch that returns the engine's three outputs
(``logits``, ``scores``, ``features``) in one pass. The graph is saved, uncompressed (float32
weights: the same arithmetic as the eager model), under

    $VIDEOZOO_HOME/openvino/<key>/model.xml, model.bin, record.json

where ``key`` hashes everything the graph depends on: the model name and architecture, a fingerprint
of the prepared weights, the clip shape, and the openvino, torch and videozoo versions. Each micro-batch
size gets a static-shape compilation (faster kernels than a dynamic batch); OpenVINO keeps those
compiled blobs in ``$VIDEOZOO_HOME/openvino/blobs`` (its ``CACHE_DIR``), keyed by the graph, the
precision, the CPU and its own version. A second run therefore starts without converting or compiling;
an entry written by another library version or for another model is never loaded (its key differs),
and a damaged entry is converted again.

Precision: ``fp32`` (``INFERENCE_PRECISION_HINT=f32``: the fixtures' arithmetic) or ``bf16`` where the
CPU computes it natively, as the engine's ``auto`` chooses.

Signal stacks: on Linux, OpenVINO's CPU plugin gives the thread that compiles a model an alternate
signal stack of its own (``sigaltstack``), which it unmaps when that compiled model is destroyed,
putting back the stack it found only if its own is still the thread's. Two compiled models released
in the order they were compiled (this runner compiles one per micro-batch size) leave the thread's
alternate stack pointing at unmapped memory, and the next signal handled there with ``SA_ONSTACK``
(every Python signal handler: Ctrl-C, a DataLoader's SIGCHLD when a worker or subprocess exits)
kills the process with SIGSEGV. :func:`keep_signal_stack` puts the thread's own stack back as soon as
a compilation returns, so OpenVINO's stacks are never in use and their release changes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from videozoo.engine.precision import Precision
from videozoo.models.base import VideoClassifier

OPENVINO_EXTRA = "pip install videozoo[openvino]"
OUTPUT_NAMES = ("logits", "scores", "features")
RECORD = "record.json"
#: the version of this cache's layout; part of every key
LAYOUT = 1

Views = Tensor | list[Tensor]


class OpenVinoUnavailableError(RuntimeError):
    """openvino is not installed; the message says how to install it."""


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise OpenVinoUnavailableError(f"the openvino backend needs openvino: {OPENVINO_EXTRA}") from None
    return openvino


def openvino_available() -> bool:
    try:
        import_openvino()
    except OpenVinoUnavailableError:
        return False
    return True


#: names the backend ``auto`` takes for a model object on a CPU: torch or openvino
BACKEND_ENV = "VIDEOZOO_BACKEND"


def auto_backend(device: torch.device, precision: str) -> str:
    """What ``--backend auto`` runs a model with on ``device``: openvino on a CPU where it is installed
    (faster on every model measured, docs/engine.md), else torch; ``$VIDEOZOO_BACKEND`` decides instead
    when set (``torch`` suits short-lived processes whose weights change every run: no conversion)."""
    forced = os.environ.get(BACKEND_ENV, "").strip()
    if forced:
        if forced not in ("torch", "openvino"):
            raise ValueError(f"${BACKEND_ENV}={forced!r}: choose torch or openvino")
        return forced if device.type == "cpu" else "torch"
    if device.type == "cpu" and precision in ("auto", "fp32", "bf16") and openvino_available():
        return "openvino"
    return "torch"


class _SignalStack(ctypes.Structure):
    """Linux's ``stack_t``: where a thread's signal handlers run when installed with SA_ONSTACK."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_SS_DISABLE = 2  # Linux: the thread has no alternate signal stack


def _libc_sigaltstack():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_SignalStack), ctypes.POINTER(_SignalStack)]
    fn.restype = ctypes.c_int
    return fn


_sigaltstack = _libc_sigaltstack()


def signal_stack() -> tuple[int, int, bool] | None:
    """The calling thread's alternate signal stack: (address, size, disabled); None off Linux."""
    if _sigaltstack is None:
        return None
    current = _SignalStack()
    if _sigaltstack(None, ctypes.byref(current)) != 0:
        return None
    return int(current.ss_sp or 0), int(current.ss_size), bool(current.ss_flags & _SS_DISABLE)


@contextlib.contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Whatever runs inside leaves the calling thread's alternate signal stack as it found it.

    Around OpenVINO's compilations (see the module's docstring): the stack put back is the one the
    thread had, never one that a later release could unmap."""
    if _sigaltstack is None:
        yield
        return
    before = _SignalStack()
    if _sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        now = _SignalStack()
        if _sigaltstack(None, ctypes.byref(now)) == 0 and (now.ss_sp, now.ss_flags) != (
            before.ss_sp,
            before.ss_flags,
        ):
            before.ss_flags &= _SS_DISABLE  # SS_ONSTACK is a state, not a setting
            _sigaltstack(ctypes.byref(before), None)


def cache_root() -> Path:
    return Path(os.environ.get("VIDEOZOO_HOME") or Path.home() / ".cache" / "videozoo") / "openvino"


class _Outputs(nn.Module):
    """clip(s) -> (logits, scores, features): the graph OpenVINO converts."""

    def __init__(self, model: VideoClassifier, two_pathway: bool):
        super().__init__()
        self.model, self.two_pathway = model, two_pathway

    def forward(self, *clips: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = list(clips) if self.two_pathway else clips[0]
        return self.model.inference_outputs(x)


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer of ``model`` (names, shapes, dtypes, values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        data = t.detach().cpu().contiguous()
        if data.dtype == torch.bfloat16:
            data = data.view(torch.int16)
        h.update(data.numpy().tobytes())
    return h.hexdigest()


def graph_key(model: VideoClassifier, shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    """What the converted graph depends on (its cache key is a hash of this record)."""
    import videozoo

    ov = import_openvino()
    arch = {k: repr(v) for k, v in sorted(dict(getattr(model, "arch", {}) or {}).items())}
    return {
        "layout": LAYOUT,
        "model": model.model_name,
        "arch": arch,
        "num_classes": model.num_classes,
        "weights": weights_fingerprint(model),
        "view_shapes": [list(s) for s in shapes],
        "openvino": ov.__version__,
        "torch": torch.__version__,
        "videozoo": getattr(videozoo, "__version__", "0"),
    }


def _key_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:24]


def _file_record(folder: Path) -> dict[str, Any]:
    """The graph file's sha256 and the weights file's size: a damaged entry is never read."""
    xml, weights = folder / "model.xml", folder / "model.bin"
    if not (xml.is_file() and weights.is_file()):
        return {}
    return {"model.xml": hashlib.sha256(xml.read_bytes()).hexdigest(), "model.bin": weights.stat().st_size}


class OpenVinoRunner:
    """Each micro-batch through an OpenVINO compilation of the prepared model.

    model: prepared for export (BatchNorm folded, no oneDNN fusions), float32, on the CPU.
    example: one view, as the engine feeds them ((1, 3, T, H, W) or [slow, fast]).
    """

    backend = "openvino"

    def __init__(
        self,
        model: VideoClassifier,
        example: Views,
        precision: Precision,
        *,
        threads: int | None = None,
        cache: Path | None = None,
        log: Callable[[str], None] | None = None,
    ):
        if precision.name not in ("fp32", "bf16"):
            raise ValueError(f"--precision {precision.name}: the openvino backend runs fp32 or bf16 (CPU)")
        self.ov = import_openvino()
        self.precision = precision
        self.threads = threads or torch.get_num_threads()
        self.two_pathway = isinstance(example, list)
        parts = example if isinstance(example, list) else [example]
        self.view_shapes = [tuple(p.shape[1:]) for p in parts]
        self.root = cache if cache is not None else cache_root()
        self.log = log or (lambda _msg: None)
        record = graph_key(model, self.view_shapes)
        self.entry = self.root / _key_hash(record)
        self.core = self.ov.Core()
        # OpenVINO's own cache of compiled blobs (keyed by graph, precision, CPU and its version).
        self.core.set_property({"CACHE_DIR": str(self.root / "blobs")})
        self.converted_seconds = 0.0  # spent converting in this run (0: read from the cache)
        self.graph = self._load_or_convert(model, parts, record)
        self._requests: dict[int, Any] = {}

    # -- the graph: converted once, then read from the cache -------------------------------------
    def _load_or_convert(self, model: VideoClassifier, parts: list[Tensor], record: dict[str, Any]):
        xml = self.entry / "model.xml"
        try:
            stored = json.loads((self.entry / RECORD).read_text())
            files = stored.pop("files", None)
            # Checked before OpenVINO reads anything: on a file it cannot parse as IR it tries its other
            # front ends (TensorFlow's among them), whose libraries then crash the process later.
            if stored == record and files == _file_record(self.entry):
                return self.core.read_model(str(xml))
        except (OSError, ValueError, RuntimeError):
            pass  # absent or damaged: converted again below
        t0 = time.perf_counter()
        self.log(f"openvino: converting {model.model_name} (once; cached in {self.entry})")
        graph = self._convert(model, parts)
        self.entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.entry.parent))
        try:
            # Uncompressed: float32 weights, the eager model's arithmetic.
            self.ov.save_model(graph, str(tmp / "model.xml"), compress_to_fp16=False)
            written = {**record, "files": _file_record(tmp)}
            (tmp / RECORD).write_text(json.dumps(written, indent=2, sort_keys=True))
            if self.entry.exists():
                shutil.rmtree(self.entry, ignore_errors=True)
            os.replace(tmp, self.entry)
        except OSError as e:
            self.log(f"openvino: could not cache the converted graph in {self.entry} ({e}); it is used uncached")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.converted_seconds = time.perf_counter() - t0
        return graph

    def _convert(self, model: VideoClassifier, parts: list[Tensor]):
        wrapper = _Outputs(model, self.two_pathway).eval()
        # Traced at batch 2 (batch 1 could be specialised), then the batch axis made symbolic.
        example = tuple(p.expand(2, *p.shape[1:]).contiguous() for p in parts)
        with torch.no_grad():
            # Traced here (one pass, no re-check): converting the module directly makes OpenVINO trace
            # it with its own checks, several times slower.
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            graph = self.ov.convert_model(traced, example_input=example)
        for port, name in zip(graph.outputs, OUTPUT_NAMES, strict=True):
            port.get_tensor().set_names({name})
        graph.reshape({i: self.ov.PartialShape([-1, *s]) for i, s in enumerate(self.view_shapes)})
        return graph

    # -- compiled per micro-batch size -----------------------------------------------------------
    def _request(self, batch: int):
        req = self._requests.get(batch)
        if req is None:
            graph = self.graph.clone()
            graph.reshape({i: self.ov.PartialShape([batch, *s]) for i, s in enumerate(self.view_shapes)})
            config = {
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision.name == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": int(self.threads),
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
            }
            with keep_signal_stack():  # OpenVINO's own stack would be unmapped under us later
                compiled = self.core.compile_model(graph, "CPU", config)
            req = compiled.create_infer_request()
            self._requests[batch] = req
        return req

    def __call__(self, views: Views, output: str) -> Tensor:
        parts = views if isinstance(views, list) else [views]
        batch = len(parts[0])
        req = self._request(batch)
        feed = {i: p.detach().to("cpu", torch.float32).contiguous().numpy() for i, p in enumerate(parts)}
        req.infer(feed)
        out = req.get_tensor(output).data
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
