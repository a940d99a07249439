"""`videozoo doctor`: what is installed, what this machine can do, and a short self-test.

The report holds the versions of Python, torch, PyAV (with the FFmpeg libraries it was built with)
and of the optional runtimes where installed; the CPU's model and instruction sets; what ``auto``
picks for device, precision and backend, asked of the engine's own decision functions; threads;
GPUs; and the weights cache, every file checked as a download is. Then a self-test writes a small
generated video, decodes it in this process and in a loader worker process, and runs
``motion_tiny`` (packaged weights, offline) on it. Each step runs on a thread of its own with a
time limit, so a step that hangs (a decoder stuck in FFmpeg) is reported as hung when its limit
passes instead of stalling the command. A report fails when any check fails; the failures name
their check.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videozoo.data.synth.dataset import render_video, write_video
from videozoo.data.workers import WatchedLoader, worker_context
from videozoo.engine import Engine, resolve_device, resolve_precision
from videozoo.engine.openvino import auto_backend
from videozoo.engine.precision import cpu_has_bf16
from videozoo.io import open_video
from videozoo.models.registry import get_spec, list_models
from videozoo.version import __version__
from videozoo.weights import hub

#: The default time limit of each self-test step, in seconds (a healthy machine needs about one).
STEP_SECONDS = 20.0
#: Optional packages reported where installed: (distribution, module imported to check it loads).
OPTIONAL = (("torchcodec", "torchcodec"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino"), ("ray", None))
#: CPU instruction sets that decide kernels and precision here.
CPU_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx_vnni",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
# The test video: a slide to the left, long enough for one motion_tiny clip (8 frames every 2nd at 15 fps).
_VIDEO_CLASS, _VIDEO_FRAMES, _VIDEO_SIZE, _VIDEO_FPS = "move_left", 30, (96, 96), 15


@dataclass
class Check:
    """One check: ``status`` is ok, failed, hung or skipped; ``detail`` says what was found."""

    name: str
    status: str
    detail: str
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


def run_step(name: str, fn: Callable[[], str], limit: float) -> Check:
    """``fn()`` (returning its detail line) on a daemon thread, given up after ``limit`` seconds.

    A step that has not returned by then is reported as hung and left running: a thread stuck in
    native code cannot be stopped, only abandoned.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["detail"] = fn()
        except BaseException as e:  # every failure, reported by name
            box["error"] = f"{type(e).__name__}: {e}"

    t0 = time.perf_counter()
    thread = threading.Thread(target=target, name=f"videozoo doctor: {name}", daemon=True)
    thread.start()
    thread.join(limit)
    seconds = round(time.perf_counter() - t0, 3)
    if thread.is_alive():
        return Check(name, "hung", f"no result within {limit:g} s (the step is stuck; it was abandoned)", seconds)
    if "error" in box:
        return Check(name, "failed", box["error"], seconds)
    return Check(name, "ok", str(box.get("detail", "")), seconds)


def versions() -> dict[str, Any]:
    """Python, videozoo and the packages it runs on; None for an optional package not installed."""
    import av

    out: dict[str, Any] = {
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {platform.platform()})",
        "videozoo": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "av": av.__version__,
        # The FFmpeg libraries PyAV was built with (the wheel bundles its own FFmpeg).
        "ffmpeg": {name: ".".join(map(str, v)) for name, v in sorted(av.library_versions.items())},
    }
    ffmpeg_build = getattr(av, "ffmpeg_version_info", None)
    if ffmpeg_build:
        out["ffmpeg_build"] = str(ffmpeg_build)
    for dist, _ in OPTIONAL:
        out[dist] = _installed(dist)
    return out


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def runtime_checks() -> list[Check]:
    """Each optional runtime that is installed must import (a broken install is a failed check)."""
    checks = []
    for dist, module in OPTIONAL:
        if module is None or _installed(dist) is None:
            continue
        t0 = time.perf_counter()
        try:
            importlib.import_module(module)
        except Exception as e:  # a broken wheel raises anything from ImportError to OSError
            checks.append(Check(f"import {module}", "failed", f"{type(e).__name__}: {e}", time.perf_counter() - t0))
        else:
            checks.append(Check(f"import {module}", "ok", "loads", round(time.perf_counter() - t0, 3)))
    return checks


def cpu() -> dict[str, Any]:
    """The CPU's model, the instruction sets that matter here, and what torch's kernels use."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "instruction_sets": [f for f in CPU_FLAGS if f in flags],
        "torch_kernels": capability,
        "native_bf16": cpu_has_bf16(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"),
    }


def auto_choices() -> dict[str, str]:
    """What ``--device auto --precision auto --backend auto`` runs a model with here (the engine's own choice)."""
    device = resolve_device("auto")
    precision = resolve_precision("auto", device, warn=False)
    return {"device": str(device), "precision": precision.name, "backend": auto_backend(device, precision.name)}


def threads() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "usable_cores": affinity,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        # How loader workers start ($VIDEOZOO_WORKER_START), as the worker self-test starts them.
        "worker_start_method": worker_context().get_start_method(),
    }


def gpus() -> dict[str, Any]:
    out: dict[str, Any] = {"cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "devices": []}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["devices"].append(
                {
                    "index": i,
                    "name": p.name,
                    "memory_gib": round(p.total_memory / 2**30, 1),
                    "capability": f"{p.major}.{p.minor}",
                }
            )
        out["bf16"] = bool(torch.cuda.is_bf16_supported())
    mps = getattr(torch.backends, "mps", None)
    out["mps_available"] = bool(mps and mps.is_available())
    return out


def weights_cache() -> tuple[dict[str, Any], list[Check]]:
    """The cache (hub.cache_report over every registry source) and its checks: no damaged file, and
    the packaged weights present and whole."""
    sources = [s for name in list_models() for s in get_spec(name).weights.values()]
    report = hub.cache_report(sources)
    damaged = [e for e in report["checkpoints"] if e["status"].startswith("damaged")]
    checks = [
        Check(
            "weights cache",
            "failed" if damaged else "ok",
            "; ".join(e["status"] for e in damaged) + " (delete the file to download it again)"
            if damaged
            else f"{len(report['checkpoints'])} file(s), none damaged",
        )
    ]
    for source in sources:
        if source.packaged:
            try:
                hub.packaged_path(source)
            except (hub.IntegrityError, hub.WeightsUnavailableError) as e:
                checks.append(Check(f"packaged weights {source.filename}", "failed", str(e)))
            else:
                checks.append(Check(f"packaged weights {source.filename}", "ok", "present, sha256 matches"))
    return report, checks


class _OneVideo(torch.utils.data.Dataset):
    """Decodes the one test video (in a loader worker)."""

    def __init__(self, path: str):
        self.path = path

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> torch.Tensor:
        return _decode(self.path)


def _decode(path: str) -> torch.Tensor:
    with open_video(path, threads=1) as video:
        return video.decode_all().frames  # (C, T, H, W) uint8


def self_test(limit: float = STEP_SECONDS, folder: str | os.PathLike | None = None) -> list[Check]:
    """Write a generated video, decode it here and in a worker process, run motion_tiny on it."""
    with tempfile.TemporaryDirectory(prefix="videozoo-doctor-", dir=folder) as tmp:
        path = str(Path(tmp) / "doctor.mp4")
        state: dict[str, Any] = {}

        def write() -> str:
            frames = render_video(_VIDEO_CLASS, 0, size=_VIDEO_SIZE, num_frames=_VIDEO_FRAMES).frames
            write_video(path, frames, fps=_VIDEO_FPS)
            return f"{_VIDEO_FRAMES} frames {_VIDEO_SIZE[1]}x{_VIDEO_SIZE[0]} H.264, {os.path.getsize(path)} bytes"

        def decode_here() -> str:
            frames = _decode(path)
            if frames.shape[1] != _VIDEO_FRAMES:
                raise RuntimeError(f"{frames.shape[1]} frames decoded, {_VIDEO_FRAMES} written")
            state["frames"] = frames
            return f"{frames.shape[1]} frames of {frames.shape[3]}x{frames.shape[2]}"

        def decode_in_worker() -> str:
            loader = WatchedLoader(
                _OneVideo(path), num_workers=1, stall_seconds=limit, batch_size=None, describe=lambda i: path
            )
            (frames,) = list(loader)
            if "frames" in state and not torch.equal(frames, state["frames"]):
                raise RuntimeError("the worker's frames differ from those decoded in this process")
            return f"{frames.shape[1]} frames, equal to this process's" if "frames" in state else "decoded"

        def run_model() -> str:
            # With the auto choices, as a run without flags: on a GPU where there is one.
            engine = Engine.build("motion_tiny", weights="default", device="auto")
            top = engine.predict(path).top_k(1)[0]
            if not np.isfinite(top["probability"]):
                raise RuntimeError(f"motion_tiny gave a non-finite score {top['probability']}")
            where = f"{engine.device}, {engine.backend}, {engine.precision}"
            return f"{where}: {top['label']} ({top['probability']:.2f})"

        checks = [run_step("write a test video", write, limit)]
        steps: list[tuple[str, Callable[[], str]]] = [
            ("decode in-process", decode_here),
            ("decode in a worker process", decode_in_worker),
            ("run motion_tiny", run_model),
        ]
        for name, fn in steps:
            if checks[0].status != "ok":
                checks.append(Check(name, "skipped", "no test video"))
            else:
                checks.append(run_step(name, fn, limit))
        return checks


def report(*, self_test_steps: bool = True, limit: float = STEP_SECONDS) -> dict[str, Any]:
    """Everything `videozoo doctor` shows, as one JSON-ready dict; ``ok`` is False when a check failed."""
    checks = runtime_checks()
    cache, cache_checks = weights_cache()
    checks += cache_checks
    if self_test_steps:
        checks += self_test(limit)
    return {
        "versions": versions(),
        "cpu": cpu(),
        "auto": auto_choices(),
        "threads": threads(),
        "gpu": gpus(),
        "weights_cache": cache,
        "checks": [asdict(c) for c in checks],
        "failed": [c.name for c in checks if not c.ok],
        "hung": [c.name for c in checks if c.status == "hung"],
        "ok": all(c.ok for c in checks),
    }


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def format_report(r: dict[str, Any]) -> str:
    """The report as text, one fact a line."""
    v, c, a, t, g, w = r["versions"], r["cpu"], r["auto"], r["threads"], r["gpu"], r["weights_cache"]
    lines = ["versions"]
    for key in ("python", "videozoo", "torch", "numpy", "av"):
        lines.append(f"  {key:<12} {v[key]}")
    build = f"FFmpeg {v['ffmpeg_build']}: " if v.get("ffmpeg_build") else ""
    lines.append(f"  {'ffmpeg':<12} {build}" + ", ".join(f"{k} {x}" for k, x in v["ffmpeg"].items()))
    for dist, _ in OPTIONAL:
        lines.append(f"  {dist:<12} {v[dist] or 'not installed'}")
    lines.append("cpu")
    lines.append(f"  {'model':<12} {c['model']} ({c['logical_cores']} logical cores)")
    lines.append(f"  {'instructions':<12} {' '.join(c['instruction_sets']) or '-'}")
    lines.append(
        f"  {'kernels':<12} torch {c['torch_kernels'] or '-'}; bf16 {'native' if c['native_bf16'] else 'emulated'}"
    )
    lines.append(f"  {'auto picks':<12} device {a['device']}, precision {a['precision']}, backend {a['backend']}")
    lines.append(
        f"threads        torch {t['torch_intra_op']} intra-op, {t['torch_inter_op']} inter-op; "
        f"{t['usable_cores']} usable cores; OMP_NUM_THREADS={t['OMP_NUM_THREADS'] or 'unset'}; "
        f"workers start by {t['worker_start_method']}"
    )
    if g["devices"]:
        names = ", ".join(
            f"{d['index']}: {d['name']} ({d['memory_gib']} GiB, sm {d['capability']})" for d in g["devices"]
        )
        lines.append(f"gpu            CUDA {g['cuda_build']}; {names}; bf16 {'yes' if g.get('bf16') else 'no'}")
    else:
        build = f"torch built with CUDA {g['cuda_build']}" if g["cuda_build"] else "CPU build of torch"
        lines.append(f"gpu            none ({build}){'; MPS available' if g['mps_available'] else ''}")
    lines.append(f"weights cache  {w['path']} ({_size(w['bytes'])}, {len(w['checkpoints'])} checkpoint file(s))")
    for e in w["checkpoints"]:
        lines.append(f"  {Path(e['file']).name:<40} {_size(e['bytes']):>10}  {e['status']}")
    lines.append("checks")
    width = max((len(ch["name"]) for ch in r["checks"]), default=0)
    for ch in r["checks"]:
        took = f"{ch['seconds']:6.2f} s" if ch["seconds"] is not None else " " * 8
        lines.append(f"  {ch['status']:<7} {ch['name']:<{width}} {took}  {ch['detail']}")
    lines.append("all checks passed" if r["ok"] else "FAILED: " + ", ".join(r["failed"]))
    return "\n".join(lines)


def flush_and_exit_if_hung(r: dict[str, Any], code: int) -> None:
    """After a hung step, leave at once: interpreter shutdown could wait on the abandoned thread.

    A worker process of an abandoned step (stuck decoding) is stopped first: it would outlive this
    process and hold its output pipes open.
    """
    if r["hung"]:
        for child in multiprocessing.active_children():
            child.kill()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
