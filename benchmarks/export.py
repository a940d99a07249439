"""Forward-pass speed of one model through each runtime: eager, compiled, ONNX Runtime, exported program.

For each model, at its eval clip, with random weights (speed does not depend on them), measures
clips per second of the forward pass alone (no decoding) at batch 1 and at the engine's own batch
(the micro-batch `Engine` picks from the memory budget) for
- eager fp32: the engine's torch runner (BatchNorm folded, channels-last weights and clips);
- eager bf16 (only where the CPU computes bf16 natively): the same under autocast;
- torch.compile: the engine's prepared module compiled with inductor (compile time reported apart);
- onnxruntime: the file `videozoo export --format onnx` writes, CPU provider, as many intra-op
  threads as torch uses;
- exported program: the `.pt2` of `videozoo export --format exported-program`, loaded with
  torch.export.load(...).module().
Each figure is the best of `--repeat` timed calls after one warm-up call, the runtimes taking turns
call by call. The machine's load average is printed with the results: on a shared machine the
figures move with what else runs.

    python benchmarks/export.py [--models x3d_xs slow_r50 ...] [--repeat 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import cpu_description  # noqa: E402  (the same CPU line as the prediction benchmark)

DEFAULT_MODELS = ["x3d_xs", "x3d_m", "r2plus1d_18", "slow_r50", "slowfast_r50"]


def best_rates(runners: dict, x, batch: int, repeat: int) -> dict[str, float]:
    """Clips/s of each runner on `x`: the fastest of `repeat` calls after a warm-up call.

    The runners take turns call by call, so a change in the machine's load falls on all of them.
    """
    best = {}
    for label, fn in runners.items():
        fn(x)  # warm-up: primitive creation, first-call allocation (and torch.compile's compile)
        best[label] = float("inf")
    for _ in range(repeat):
        for label, fn in runners.items():
            t0 = time.perf_counter()
            fn(x)
            best[label] = min(best[label], time.perf_counter() - t0)
    return {label: batch / seconds for label, seconds in best.items()}


def bench_model(name: str, tmp: Path, repeat: int, use_compile: bool) -> dict:
    import onnxruntime as ort

    import videozoo
    from videozoo.engine import Engine
    from videozoo.engine.optimize import to_channels_last
    from videozoo.export import load_program
    from videozoo.models.flops import view_input

    torch.manual_seed(0)
    model = videozoo.create_model(name)
    ckpt = videozoo.save_model(model, tmp / f"{name}.pth")
    t0 = time.perf_counter()
    onnx_path = videozoo.export(name, weights=str(ckpt), format="onnx", out=tmp / f"{name}.onnx")
    onnx_export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pt2_path = videozoo.export(name, weights=str(ckpt), format="exported-program", out=tmp / f"{name}.pt2")
    pt2_export_s = time.perf_counter() - t0

    engine = Engine(model, precision="fp32", inplace=True)
    spec = videozoo.get_spec(name)
    batches = sorted({1, engine.batch_size})
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    program = load_program(pt2_path)[0].module()

    def as_list(x):
        return x if isinstance(x, list) else [x]

    runners = {
        "eager fp32": lambda x: engine.runner(x, "logits"),
        "onnxruntime": lambda x: session.run(
            ["logits"], {n: t.numpy() for n, t in zip(names, as_list(x), strict=False)}
        ),
        "exported program": lambda x: program(*as_list(x))["logits"],
    }
    from videozoo.engine.precision import Precision, cpu_has_bf16
    from videozoo.engine.runtime import TorchRunner

    if cpu_has_bf16():
        bf16 = TorchRunner(engine.model, engine.device, Precision("bf16", "cpu"))
        runners["eager bf16"] = lambda x: bf16(x, "logits")
    compile_s = None
    if use_compile:
        compiled = torch.compile(engine.model, dynamic=False)

        def run_compiled(x):
            with torch.inference_mode():
                return compiled(to_channels_last(x))

        t0 = time.perf_counter()
        run_compiled(view_input(spec, batch=1))
        compile_s = time.perf_counter() - t0
        runners["torch.compile"] = run_compiled

    rates: dict[str, dict[int, float]] = {label: {} for label in runners}
    for b in batches:
        x = view_input(spec, batch=b)
        x = [torch.randn_like(t) for t in x] if isinstance(x, list) else torch.randn_like(x)
        with torch.inference_mode():
            for label, rate in best_rates(runners, x, b, repeat).items():
                rates[label][b] = rate
    for label in runners:
        print(
            f"  {name} {label:17s} " + "  ".join(f"batch {b}: {r:6.2f} clips/s" for b, r in rates[label].items()),
            flush=True,
        )
    return {
        "model": name,
        "clip": list(spec.input.input_shape),
        "engine_batch": engine.batch_size,
        "clips_per_s": rates,
        "onnx_export_s": onnx_export_s,
        "pt2_export_s": pt2_export_s,
        "compile_s": compile_s,
        "onnx_mb": onnx_path.stat().st_size / 2**20,
    }


def markdown(rows: list[dict]) -> str:
    labels = list(dict.fromkeys(label for r in rows for label in r["clips_per_s"]))
    head = "| model (clip) | batch | " + " | ".join(labels) + " |"
    lines = [head, "|" + "---|" * (len(labels) + 2)]
    for r in rows:
        for b in sorted({1, r["engine_batch"]}):
            cells = [f"{r['clips_per_s'][lab][b]:.2f}" if lab in r["clips_per_s"] else "-" for lab in labels]
            clip = "x".join(map(str, r["clip"][1:]))
            lines.append(f"| {r['model']} ({clip}) | {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per figure (the fastest is kept)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compile takes minutes)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from videozoo.engine.optimize import keep_freed_memory

    keep_freed_memory()  # as the videozoo commands do
    cpu = cpu_description()
    print(f"machine: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vz-export-bench-") as tmp:
        for name in args.models:
            load_before = os.getloadavg()[0]
            row = bench_model(name, Path(tmp), args.repeat, not args.no_compile)
            row["load_average"] = [load_before, os.getloadavg()[0]]
            rows.append(row)
            extra = f", torch.compile {row['compile_s']:.0f} s" if row["compile_s"] is not None else ""
            print(
                f"  {name}: export onnx {row['onnx_export_s']:.0f} s ({row['onnx_mb']:.0f} MiB), "
                f"exported program {row['pt2_export_s']:.0f} s{extra}; load average "
                f"{row['load_average'][0]:.1f} -> {row['load_average'][1]:.1f}",
                flush=True,
            )
    print()
    print(f"clips/s, forward pass only; {cpu}")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
