"""The engine's CPU backends side by side: eager torch, OpenVINO, and inductor, per model, in one run.

For each model (one child process per model, so that memory and threads do not carry over), with
random weights (speed does not depend on them), at the model's eval clip and the engine's own
micro-batch, the forward pass alone (no decoding), clips per second, best of ``--repeat`` calls after
a warm-up call, the runtimes taking turns call by call:
- ``torch``: the engine's eager runner (BatchNorm folded, conv+ReLU fused, channels-last) at the
  default precision (bf16 where the CPU computes it natively, else fp32), and in fp32;
- ``openvino``: the engine's OpenVINO runner (``--backend openvino``) at the default precision and
  in fp32; its one-time conversion and the first-call compilation are reported apart;
- ``inductor`` (``--inductor``): ``torch.compile`` of the prepared module with freezing, under the
  default precision (compile time reported apart).
bf16 rows also give the largest logit difference from fp32 eager relative to its largest value, and
whether top-1 agrees on every view of the batch. The machine's load average is printed: on a
shared machine the figures move with what else runs, so compare ratios within one run.

    python benchmarks/runtimes.py [--models slow_r50 ...] [--repeat 4] [--inductor] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SEED_MODELS = ["slow_r50", "slowfast_r50", "slowfast_r101", "i3d_r50_32x2", "r3d_18", "mc3_18", "r2plus1d_18"]
DEFAULT_MODELS = [*SEED_MODELS, "x3d_m", "csn_r101", "mvit_base_16x4"]


def _rates(runners: dict, x, batch: int, repeat: int) -> dict[str, float]:
    best = {}
    for label, fn in runners.items():
        fn(x)  # warm-up: kernel selection, first-call allocation
        best[label] = float("inf")
    for _ in range(repeat):
        for label, fn in runners.items():
            t0 = time.perf_counter()
            fn(x)
            best[label] = min(best[label], time.perf_counter() - t0)
    return {label: batch / s for label, s in best.items()}


def bench_one(name: str, repeat: int, inductor: bool) -> dict:
    import torch

    import videozoo
    from videozoo.engine import Engine
    from videozoo.models.flops import view_input

    torch.manual_seed(0)
    model = videozoo.create_model(name)
    default = Engine(copy.deepcopy(model), backend="torch")  # precision auto
    prec = default.precision.name
    batch = default.batch_size
    spec = videozoo.get_spec(name)
    x = view_input(spec, batch=batch)
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(t.shape, generator=g) for t in x] if isinstance(x, list) else torch.randn(x.shape, generator=g)
    engines = {f"torch {prec}": default}
    if prec != "fp32":
        engines["torch fp32"] = Engine(copy.deepcopy(model), backend="torch", precision="fp32")
    with tempfile.TemporaryDirectory() as home:
        os.environ["VIDEOZOO_HOME"] = home  # a cold cache: the conversion is measured
        t0 = time.perf_counter()
        ov = Engine(copy.deepcopy(model), backend="openvino")
        convert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ov.forward(x, "logits")
        compile_s = time.perf_counter() - t0
        engines[f"openvino {prec}"] = ov
        if prec != "fp32":
            engines["openvino fp32"] = Engine(copy.deepcopy(model), backend="openvino", precision="fp32")
        runners = {label: (lambda v, e=e: e.forward(v, "logits")) for label, e in engines.items()}
        inductor_compile_s = None
        if inductor:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            prepared = default.runner.model
            compiled = torch.compile(prepared)

            def run_compiled(v, c=compiled, p=default.precision):
                with torch.inference_mode(), p.autocast():
                    from videozoo.engine.optimize import to_channels_last

                    return c(to_channels_last(v)).float()

            t0 = time.perf_counter()
            run_compiled(x)
            inductor_compile_s = time.perf_counter() - t0
            runners[f"inductor {prec}"] = run_compiled
        rates = _rates(runners, x, batch, repeat)
        ref = engines.get("torch fp32", default).forward(x, "logits")
        agreement = {}
        for label, e in engines.items():
            if label.endswith("fp32") and label != "torch fp32" or label == "torch fp32":
                continue
            out = e.forward(x, "logits")
            agreement[label] = {
                "max_rel_logit_diff": float((out - ref).abs().max() / ref.abs().max()),
                "top1_equal": bool((out.argmax(1) == ref.argmax(1)).all()),
            }
        fp32_ov = engines.get("openvino fp32", ov if prec == "fp32" else None)
        fp32_err = None
        if fp32_ov is not None:
            out = fp32_ov.forward(x, "logits")
            fp32_err = float((out - ref).abs().max() / ref.abs().max())
    import resource

    return {
        "model": name,
        "batch": batch,
        "precision": prec,
        "clips_per_s": rates,
        "openvino_convert_s": convert_s,
        "openvino_first_call_s": compile_s,
        "inductor_compile_s": inductor_compile_s,
        "agreement": agreement,
        "openvino_fp32_rel_err": fp32_err,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--inductor", action="store_true", help="also torch.compile with freezing (slow to compile)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(bench_one(args.child, args.repeat, args.inductor)))
        return
    from predict import cpu_description

    results = []
    for name in args.models:
        cmd = [sys.executable, __file__, "--child", name, "--repeat", str(args.repeat)]
        if args.inductor:
            cmd.append("--inductor")
        env = {**os.environ, "VIDEOZOO_BACKEND": "torch"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.1f}")
    for r in results:
        rates = r["clips_per_s"]
        prec = r["precision"]
        tv, ov = rates[f"torch {prec}"], rates[f"openvino {prec}"]
        line = (
            f"| {r['model']} | {r['batch']} | {prec} | {tv:.2f} | {ov:.2f} | {ov / tv:.2f}x"
            f" | {rates.get('torch fp32', tv):.2f} | {rates.get('openvino fp32', ov):.2f}"
        )
        if f"inductor {prec}" in rates:
            line += f" | {rates[f'inductor {prec}']:.2f}"
        agree = r["agreement"].get(f"openvino {prec}")
        extra = f"{agree['max_rel_logit_diff']:.1e}, top-1 {'=' if agree['top1_equal'] else '!='}" if agree else "-"
        line += f" | {r['openvino_convert_s']:.1f} | {extra} | {r['peak_rss_mb']:.0f} |"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
