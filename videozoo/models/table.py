"""The model table, generated from the registry: `videozoo models` and the README's table."""

from __future__ import annotations

from dataclasses import asdict

from videozoo.models.flops import FLOPS_CONVENTION, model_gflops, model_params
from videozoo.models.registry import get_spec, list_models
from videozoo.weights.sources import license_name, license_url


def model_rows() -> list[dict]:
    rows = []
    for name in list_models():
        spec = get_spec(name)
        inp, m = spec.input, spec.metrics
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "frames": inp.num_frames,
                "sampling_rate": inp.sampling_rate,
                "crop": inp.crop_size,
                "params_m": round(model_params(spec) / 1e6, 2),
                "gflops": round(model_gflops(spec), 2),
                "published": asdict(m) if m else None,
                "test_views": f"{inp.test_clips}x{inp.test_crops}",
                "weights": {k: w.url for k, w in spec.weights.items()},
                "weights_license": {k: w.license for k, w in spec.weights.items()},
            }
        )
    return rows


def _fmt(v, nd=2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _licenses(licenses: dict[str, str], *, markdown: bool) -> str:
    """Each distinct licence of a model's weight sources: its SPDX id or terms' name (a link in Markdown)."""
    shown = []
    for text in dict.fromkeys(licenses.values()):
        shown.append(f"[{license_name(text)}]({license_url(text)})" if markdown else license_name(text))
    return ", ".join(shown) or "-"


# How the table names the datasets of accuracies that are not Kinetics-400's.
_DATASETS = {"ssv2": "SSv2", "diving48": "Diving48"}


def _accuracy(p: dict, key: str) -> str:
    value = _fmt(p.get(key))
    dataset = p.get("dataset") or "kinetics400"
    if value == "-" or dataset == "kinetics400":
        return value
    return f"{value} ({_DATASETS.get(dataset, dataset)})"


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    head = [
        "model",
        "family",
        "frames x rate",
        "crop",
        "params (M)",
        "GFLOPs",
        "pub. GFLOPs",
        "top-1",
        "top-5",
        "views",
        "weights licence",
    ]
    body = []
    for r in rows:
        p = r["published"] or {}
        body.append(
            [
                r["name"],
                r["family"],
                f"{r['frames']}x{r['sampling_rate']}",
                str(r["crop"]),
                _fmt(r["params_m"]),
                _fmt(r["gflops"]),
                _fmt(p.get("gflops")),
                _accuracy(p, "top1"),
                _accuracy(p, "top5"),
                p.get("views") or "-",
                _licenses(r["weights_license"], markdown=markdown),
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(head)]
    # Names and licences left-aligned, figures right-aligned.
    fmt = "  ".join(f"{{:{'<' if i < 2 or i == len(head) - 1 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head).rstrip()] + [fmt.format(*row).rstrip() for row in body]
    lines.append("")
    lines.append(f"{FLOPS_CONVENTION}; params and GFLOPs computed from the built model; top-1/top-5 and")
    lines.append("pub. GFLOPs as published with the weights, on Kinetics-400 (unless another dataset is named)")
    lines.append("with the listed test views; weights licence: the terms each publisher gives the weights under")
    lines.append("(`--json` has them in full).")
    return "\n".join(lines)


def flops_notes() -> list[str]:
    """Why a computed figure differs from the published one, where it does."""
    notes = []
    for name in list_models():
        m = get_spec(name).metrics
        if m and m.flops_note:
            notes.append(f"{name}: {m.flops_note}")
    return notes
