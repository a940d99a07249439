"""From scored windows to segments: smoothing over time, runs of one label, and their boundaries.

- Each window's probabilities stand at the window's centre.
- Smoothing (``smooth`` = N) is a centred moving average over N windows (an even N uses N + 1
  taps with half weight at both ends, so it stays centred and moves no boundary); at the ends of
  the timeline the average is over the windows there are.
- Each window takes the smoothed arg-max label; consecutive windows of one label form a run.
- Runs shorter than ``min_segment`` seconds are absorbed, shortest first: between two runs of one
  label, the three fuse; between two different labels, the short run's windows are split between
  them where that agrees best with the smoothed probabilities; at either end of the timeline it
  joins its only neighbour.
- The boundary between run A (last window i) and run B (first window i + 1) is where the smoothed
  ``p(A) - p(B)``, interpolated linearly between the two windows' centres, crosses zero (the
  midpoint of the centres if it does not change sign there). A window straddling a change from A to
  B scores, to a first approximation, A and B in proportion to how much of each it holds, so
  ``p(A) - p(B)`` is zero where its centre is on the change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from videozoo.jobs.timeline.result import Segment


def smooth_scores(scores: np.ndarray, n: int) -> np.ndarray:
    """(N, K) -> (N, K): centred moving average over ``n`` windows (see the module docstring)."""
    if n < 1:
        raise ValueError(f"--smooth must be at least 1, got {n}")
    scores = np.asarray(scores, dtype=np.float64)
    if n == 1 or len(scores) < 2:
        return scores.copy()
    if n % 2:
        kernel = np.ones(n)
    else:
        kernel = np.ones(n + 1)
        kernel[0] = kernel[-1] = 0.5
    half = len(kernel) // 2
    num = np.zeros_like(scores)
    den = np.zeros(len(scores))
    count = len(scores)
    for j, w in enumerate(kernel):
        off = j - half  # out[i] takes scores[i + off]
        lo, hi = max(0, -off), min(count, count - off)
        if lo >= hi:
            continue
        num[lo:hi] += w * scores[lo + off : hi + off]
        den[lo:hi] += w
    return num / den[:, None]


def find_segments(
    centers: Sequence[float],
    smoothed: np.ndarray,
    *,
    start: float,
    end: float,
    min_segment: float,
    class_names: Sequence[str],
    frame_at: Callable[[float], int],
) -> list[Segment]:
    """Segments covering ``[start, end)`` from the smoothed (N, K) probabilities at ``centers``."""
    c = np.asarray(centers, dtype=np.float64)
    p = np.asarray(smoothed, dtype=np.float64)
    if len(c) == 0:
        return []
    labels = p.argmax(1)
    runs: list[list[int]] = []  # [label, first window, one past the last]
    for i, lab in enumerate(labels.tolist()):
        if runs and runs[-1][0] == lab:
            runs[-1][2] = i + 1
        else:
            runs.append([lab, i, i + 1])
    runs = _absorb_short(runs, c, p, start, end, min_segment)
    bounds = _bounds(runs, c, p, start, end)
    out = []
    for (lab, i0, i1), (a, b) in zip(runs, bounds, strict=True):
        out.append(
            Segment(
                label=class_names[lab] if lab < len(class_names) else str(lab),
                index=int(lab),
                start=a,
                end=b,
                start_frame=frame_at(a),
                end_frame=frame_at(b),
                score=float(p[i0:i1, lab].mean()),
            )
        )
    return out


def _boundary(i: int, a: int, b: int, c: np.ndarray, p: np.ndarray) -> float:
    """Time between window i (label a) and window i + 1 (label b) where p(a) - p(b) crosses zero."""
    d0 = p[i, a] - p[i, b]
    d1 = p[i + 1, a] - p[i + 1, b]
    if d0 > 0 > d1:
        return float(c[i] + (c[i + 1] - c[i]) * d0 / (d0 - d1))
    return float((c[i] + c[i + 1]) / 2)


def _bounds(runs: list[list[int]], c: np.ndarray, p: np.ndarray, start: float, end: float) -> list[tuple[float, float]]:
    cuts = [start]
    for left, right in zip(runs, runs[1:], strict=False):
        cuts.append(min(max(_boundary(left[2] - 1, left[0], right[0], c, p), cuts[-1]), end))
    cuts.append(end)
    return list(zip(cuts, cuts[1:], strict=False))


def _absorb_short(
    runs: list[list[int]], c: np.ndarray, p: np.ndarray, start: float, end: float, min_segment: float
) -> list[list[int]]:
    runs = [list(r) for r in runs]
    while len(runs) > 1:
        bounds = _bounds(runs, c, p, start, end)
        lengths = [b - a for a, b in bounds]
        short = [i for i, d in enumerate(lengths) if d < min_segment]
        if not short:
            break
        r = min(short, key=lambda i: (lengths[i], i))
        lab, i0, i1 = runs[r]
        if r == 0:
            runs[1][1] = i0
            del runs[0]
        elif r == len(runs) - 1:
            runs[-2][2] = i1
            del runs[-1]
        elif runs[r - 1][0] == runs[r + 1][0]:
            runs[r - 1][2] = runs[r + 1][2]
            del runs[r : r + 2]
        else:
            a, b = runs[r - 1][0], runs[r + 1][0]
            # Windows i0..s-1 go to the left run, s..i1-1 to the right: the split that agrees best.
            gain = [p[i0:s, a].sum() + p[s:i1, b].sum() for s in range(i0, i1 + 1)]
            s = i0 + int(np.argmax(gain))
            runs[r - 1][2] = s
            runs[r + 1][1] = s
            del runs[r]
    return runs
