"""The OpenVINO backend against the eager model: same outputs, a cache that is reused and never stale."""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install videozoo[openvino])")

import videozoo  # noqa: E402
from videogen import make_video  # noqa: E402
from videozoo.engine import (
    Engine,  # noqa: E402
    openvino as ovb,  # noqa: E402
)
from videozoo.engine.precision import cpu_has_bf16  # noqa: E402
from videozoo.models.flops import view_input  # noqa: E402

# One-pathway CNN, two-pathway CNN; clips at a small crop (the graph is the same at any size).
MODELS = {"x3d_xs": 64, "slowfast_r50": 64}


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp() / "vz_home"  # shared by the tests of this process
    monkeypatch.setenv("VIDEOZOO_HOME", str(root))
    monkeypatch.delenv("VIDEOZOO_BACKEND", raising=False)
    return root


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    m = videozoo.create_model(name)
    crop = MODELS.get(name, 64)
    m.input_config = dataclasses.replace(m.input_config, crop_size=crop, short_side=crop)
    return m


def _views(model, batch: int, seed: int = 1):
    spec = videozoo.get_spec(model.model_name).replace(input=model.input_config)
    x = view_input(spec, batch=batch)
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g) for t in x] if isinstance(x, list) else torch.randn(x.shape, generator=g)


@pytest.mark.parametrize("name", list(MODELS))
def test_fp32_equals_the_eager_model_and_bf16_keeps_top1(name):
    model = _model(name)
    eager = Engine(copy.deepcopy(model), precision="fp32", backend="torch")
    ov = Engine(copy.deepcopy(model), precision="fp32", backend="openvino")
    assert ov.backend == "openvino" and eager.backend == "torch"
    for batch in (1, 3):  # each batch size its own static compilation
        x = _views(model, batch)
        for output in ("logits", "scores", "features"):
            ref, got = eager.forward(x, output), ov.forward(x, output)
            assert got.shape == ref.shape and got.dtype == torch.float32
            err = (got - ref).abs().max().item()
            assert err <= 1e-4 * ref.abs().max().item(), f"{name} {output} batch {batch}: {err:.3e}"
    if cpu_has_bf16():
        ov16 = Engine(copy.deepcopy(model), precision="bf16", backend="openvino")
        x = _views(model, 4)
        ref, got = eager.forward(x, "logits"), ov16.forward(x, "logits")
        assert torch.equal(got.argmax(1), ref.argmax(1))
        assert (got - ref).abs().max().item() <= 0.05 * ref.abs().max().item()


def test_a_second_engine_reads_the_cache_and_other_weights_convert_anew(capfd):
    model = _model("x3d_xs", seed=3)
    first = Engine(copy.deepcopy(model), precision="fp32", backend="openvino")
    assert first.runner.converted_seconds > 0
    entry = first.runner.entry
    assert (entry / "model.xml").is_file() and (entry / "record.json").is_file()
    capfd.readouterr()
    second = Engine(copy.deepcopy(model), precision="fp32", backend="openvino")
    assert second.runner.entry == entry and second.runner.converted_seconds == 0
    assert "converting" not in capfd.readouterr().err
    x = _views(model, 2)
    assert torch.equal(first.forward(x), second.forward(x))
    other = Engine(_model("x3d_xs", seed=4), precision="fp32", backend="openvino")
    assert other.runner.entry != entry and other.runner.converted_seconds > 0


@pytest.mark.parametrize("damage", ["other library version", "damaged graph", "missing record"])
def test_a_stale_or_damaged_entry_is_converted_again_never_loaded(damage):
    model = _model("x3d_xs", seed=5)
    x = _views(model, 2)
    first = Engine(copy.deepcopy(model), precision="fp32", backend="openvino")
    expected = first.forward(x)
    entry = first.runner.entry
    if damage == "other library version":
        record = json.loads((entry / "record.json").read_text())
        record["openvino"] = "0.0.1"
        (entry / "record.json").write_text(json.dumps(record))
    elif damage == "damaged graph":
        (entry / "model.xml").write_text("<net>cut")
    else:
        (entry / "record.json").unlink()
    again = Engine(copy.deepcopy(model), precision="fp32", backend="openvino")
    assert again.runner.converted_seconds > 0
    assert torch.allclose(again.forward(x), expected, rtol=0, atol=1e-6)
    assert json.loads((entry / "record.json").read_text())["openvino"] == ovb.import_openvino().__version__


def test_the_key_names_what_the_graph_depends_on():
    model = _model("x3d_xs")
    record = ovb.graph_key(model, [(3, 4, 64, 64)])
    assert {"model", "arch", "weights", "view_shapes", "openvino", "torch", "videozoo", "layout"} <= set(record)
    assert ovb.graph_key(model, [(3, 4, 96, 96)]) != record
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert ovb.graph_key(changed, [(3, 4, 64, 64)])["weights"] != record["weights"]


def test_auto_takes_openvino_on_a_cpu_unless_told_and_falls_back_when_conversion_fails(monkeypatch, capfd):
    assert Engine(_model("x3d_xs", seed=6), backend="auto").backend == "openvino"
    monkeypatch.setenv("VIDEOZOO_BACKEND", "torch")
    assert Engine(_model("x3d_xs", seed=6), backend="auto").backend == "torch"
    monkeypatch.setenv("VIDEOZOO_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="VIDEOZOO_BACKEND"):
        Engine(_model("x3d_xs", seed=6), backend="auto")
    monkeypatch.delenv("VIDEOZOO_BACKEND")

    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr("videozoo.engine.engine.OpenVinoRunner", refuse)
    engine = Engine(_model("x3d_xs", seed=6), backend="auto")
    assert engine.backend == "torch" and "cannot convert" in capfd.readouterr().err
    with pytest.raises(RuntimeError, match="unsupported operation"):
        Engine(_model("x3d_xs", seed=6), backend="openvino")


def test_predict_and_map_with_workers_through_openvino(tmp_path):
    model = _model("x3d_xs", seed=7)
    paths = [
        make_video(tmp_path / f"v{i}.mp4", num_frames=40, width=80, height=64, pattern="noise", seed=i)
        for i in range(3)
    ]
    eager = Engine(copy.deepcopy(model), precision="fp32", backend="torch")
    ov = Engine(copy.deepcopy(model), precision="fp32", backend="openvino")
    ours = [r.prediction for r in ov.map(paths, workers=2)]  # workers forked from a process running OpenVINO
    for path, pred in zip(paths, ours, strict=True):
        ref = eager.predict(path)
        assert (pred.scores - ref.scores).abs().max().item() <= 1e-4 * ref.scores.abs().max().item()


def test_the_cli_runs_openvino_and_refuses_an_onnx_file(tmp_path, capsys):
    from videozoo.cli import main

    model = _model("x3d_xs", seed=8)
    weights = videozoo.save_model(model, tmp_path / "m.pth")
    video = make_video(tmp_path / "a.mp4", num_frames=40, width=80, height=64, pattern="noise")
    rc = main(
        ["predict", str(video), "--model", "x3d_xs", "--weights", str(weights), "--backend", "openvino", "--json"]
    )
    assert rc == 0
    entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(entry["top_k"]) == 5
    with pytest.raises(ValueError, match="onnxruntime"):
        Engine.build("x3d_xs", weights=str(tmp_path / "m.onnx"), backend="openvino")


# -- signal stacks: OpenVINO's compilations must leave the thread's own in place -------------------

# A process that compiles a model for two engines, releases them in the order they were made, then
# takes signals handled on the alternate stack: Python's own handler, and a DataLoader's SIGCHLD
# through a subprocess's exit. Without the guard OpenVINO's CPU plugin leaves the thread's stack
# pointing at memory it has unmapped, and the first such signal is a SIGSEGV.
_SIGNALS_AFTER_RELEASE = textwrap.dedent(
    """
    import dataclasses, gc, os, signal, subprocess, sys
    import torch
    import videozoo
    from videozoo.engine import Engine
    from videozoo.engine import openvino as ovb
    from torch.utils.data._utils import signal_handling

    torch.manual_seed(0)
    model = videozoo.create_model("x3d_xs")
    model.input_config = dataclasses.replace(model.input_config, crop_size=64, short_side=64)
    before = ovb.signal_stack()
    engines = [Engine(model, precision="fp32", backend="openvino") for _ in range(2)]
    for engine in engines:
        engine.forward(torch.randn(1, 3, 4, 64, 64), "logits")
    del engine
    for _ in range(2):
        del engines[0]  # the first compiled, first released
        gc.collect()
    print("stack", ovb.signal_stack(), before, flush=True)
    got = []
    signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    os.kill(os.getpid(), signal.SIGUSR1)
    signal_handling._set_SIGCHLD_handler()  # what a DataLoader with workers installs
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print("survived", got)
    """
)


def test_signals_after_compiled_models_are_released_do_not_crash_the_process(tmp_path):
    env = {**os.environ, "VIDEOZOO_HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNALS_AFTER_RELEASE], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "survived [1]" in proc.stdout


def _install_stack(size: int = 1 << 16):
    buf = ctypes.create_string_buffer(size)
    stack = ovb._SignalStack(ctypes.cast(buf, ctypes.c_void_p), 0, size)
    assert ovb._sigaltstack(ctypes.byref(stack), None) == 0
    return buf


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack through ctypes: Linux")
@pytest.mark.parametrize("own", [True, False], ids=["thread with a stack", "thread without"])
def test_keep_signal_stack_puts_the_threads_own_back(own):
    result = {}

    def run():
        kept = [_install_stack()] if own else []
        before = ovb.signal_stack()
        assert before is not None and before[2] is not own
        with ovb.keep_signal_stack():
            kept.append(_install_stack())  # as OpenVINO's compilation does
            assert ovb.signal_stack() != before
        result["after"], result["before"] = ovb.signal_stack(), before
        ovb._sigaltstack(ovb._SignalStack(None, 2, 0), None)  # the buffers go with this thread

    t = threading.Thread(target=run)  # a fresh thread: no stack of its own yet
    t.start()
    t.join()
    assert result["after"] == result["before"]


# -- an AVX2-only CPU's instruction set, emulated on this one (docs/engine.md) ----------------------

_UNDER_AVX2_CAP = textwrap.dedent(
    """
    import collections, dataclasses
    import torch
    import videozoo
    from videozoo.engine import Engine

    torch.manual_seed(0)
    model = videozoo.create_model("x3d_xs")
    model.input_config = dataclasses.replace(model.input_config, crop_size=64, short_side=64)
    engine = Engine(model, backend="auto")
    engine.forward(torch.randn(1, 3, 4, 64, 64), "logits")
    kernels = collections.Counter()
    for req in engine.runner._requests.values():
        for op in req.get_compiled_model().get_runtime_model().get_ordered_ops():
            info = {k: v.astype(str) for k, v in op.get_rt_info().items()}
            if info.get("layerType") == "Convolution":
                kernels[info["primitiveType"]] += 1
    print(engine.backend, engine.precision.name, sorted(kernels))
    """
)


def _cpu_flags() -> str:
    try:
        return open("/proc/cpuinfo").read()
    except OSError:
        return ""


@pytest.mark.skipif(" avx2" not in _cpu_flags(), reason="an x86 Linux CPU with AVX2")
def test_the_avx2_cap_reaches_openvino_convolutions_and_auto_runs_fp32(tmp_path):
    # ONEDNN_MAX_CPU_ISA is read by the oneDNN inside OpenVINO's CPU plugin too: the capped benchmark
    # runs OpenVINO's convolutions with AVX2 kernels, and auto takes fp32 (bf16 is not native there).
    env = {
        **os.environ,
        "VIDEOZOO_HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
    }
    proc = subprocess.run([sys.executable, "-c", _UNDER_AVX2_CAP], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    backend, precision, kernels = proc.stdout.strip().splitlines()[-1].split(" ", 2)
    assert (backend, precision) == ("openvino", "fp32")
    assert "avx2" in kernels and "avx512" not in kernels, kernels
