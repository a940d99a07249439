"""``timeline.png``: time on x, the leading classes' smoothed probabilities as lines (each window's
own probabilities as faint dots), and below them the segments as coloured bands with their labels.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global backend change).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from videozoo.jobs.timeline.result import TimelineResult

MAX_LINES = 8
SHOWN_PEAK = 0.25  # a class whose smoothed probability reaches this somewhere gets a line


def plot_classes(result: TimelineResult, limit: int = MAX_LINES) -> list[int]:
    """The classes drawn: the segments' labels (the longest in all, in timeline order), then by highest
    smoothed peak the classes that reach ``SHOWN_PEAK`` somewhere (at least three lines in all)."""
    total: dict[int, float] = {}
    for s in result.segments:
        total[s.index] = total.get(s.index, 0.0) + s.duration
    first = list(total)  # in order of first appearance
    longest = set(sorted(total, key=lambda i: -total[i])[:limit])
    chosen = [i for i in first if i in longest]  # the longest, listed in timeline order
    if result.smoothed is not None and len(result.smoothed):
        peaks = result.smoothed.max(0)
        for i in np.argsort(-peaks).tolist():
            # At least three lines, and every class that comes close to winning somewhere.
            if len(chosen) >= limit or (len(chosen) >= max(3, len(total)) and peaks[i] < SHOWN_PEAK):
                break
            if i not in chosen:
                chosen.append(i)
    return chosen


def plot_timeline(result: TimelineResult, path: str | os.PathLike) -> Path:
    """Draw ``result`` into ``path`` (PNG); needs matplotlib (``pip install videozoo[timeline]``)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("timeline.png needs matplotlib: pip install 'videozoo[timeline]'") from None
    path = Path(path)
    classes = plot_classes(result)
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
    ]
    colour = {c: palette[i % len(palette)] for i, c in enumerate(classes)}
    other = "#c8c8c8"
    width = float(np.clip(4 + result.duration / 6, 8, 20))
    fig = Figure(figsize=(width, 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, strip = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    t = np.array([w.center for w in result.windows])
    raw = np.stack([w.scores for w in result.windows]) if result.windows else np.zeros((0, 0))
    for c in classes:
        name = result.class_names[c] if c < len(result.class_names) else str(c)
        if len(t) and c >= raw.shape[1]:  # "none" (a none threshold): a level line at the threshold
            top.plot(t, result.smoothed[:, c], "--", color=colour[c], linewidth=1.2, label=f"{name} (threshold)")
        elif len(t):
            top.plot(t, raw[:, c], ".", color=colour[c], alpha=0.25, markersize=3)
            top.plot(t, result.smoothed[:, c], "-", color=colour[c], linewidth=1.8, label=name)
    for s in result.segments:
        top.axvspan(s.start, s.end, color=colour.get(s.index, other), alpha=0.08, linewidth=0)
        strip.axvspan(s.start, s.end, color=colour.get(s.index, other), alpha=0.85, linewidth=0)
        strip.text((s.start + s.end) / 2, 0.5, s.label, ha="center", va="center", fontsize=8, clip_on=True)
    for s in result.segments[1:]:
        top.axvline(s.start, color="#444444", linewidth=0.6, linestyle=":")
    top.set_ylim(0, 1.02)
    top.set_ylabel("probability")
    top.set_xlim(0 if result.segments and result.segments[0].start < 1 else None, result.duration or None)
    top.set_title(
        f"{Path(result.video).name if result.video != '-' else 'standard input'} - {result.model}, "
        f"window {result.window:.2f} s, stride {result.stride:.2f} s, smoothed over {result.smooth}",
        fontsize=10,
    )
    if classes and len(t):
        top.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    top.grid(True, alpha=0.25)
    strip.set_yticks([])
    strip.set_ylabel("segments", rotation=0, ha="right", va="center", fontsize=8)
    strip.set_xlabel("time (s)")
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
